import os
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError, CommandParser

DEMO_USERS = {
    "alice": ["blue", "staff-room"],
    "bob": ["blue"],
    "carol": ["green"],
}


class Command(BaseCommand):
    help = "Create the demo users alice, bob and carol and their groups (development only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="run even with DEBUG off")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError("demo users are for development: set DJANGO_DEBUG=1 or --force")
        password = os.environ.get("WSLOOP_DEMO_PASSWORD", "wsloop-demo")
        for username, group_names in DEMO_USERS.items():
            user, _ = User.objects.get_or_create(username=username)
            user.set_password(password)
            user.is_staff = "staff-room" in group_names
            user.save()
            user.groups.set(Group.objects.get_or_create(name=name)[0] for name in group_names)
        self.stdout.write(
            f"demo users: {', '.join(DEMO_USERS)} (password from "
            "WSLOOP_DEMO_PASSWORD, default wsloop-demo)"
        )
