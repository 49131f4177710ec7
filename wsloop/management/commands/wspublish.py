from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from wsloop.publisher import PublishError, publish


class Command(BaseCommand):
    help = "Publish a message to the websockets of a facility (broadcast, users, groups, sessions)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("facility")
        parser.add_argument("message")
        parser.add_argument("--broadcast", action="store_true", help="every subscriber")
        parser.add_argument("--user", action="append", default=[], dest="users")
        parser.add_argument("--group", action="append", default=[], dest="groups")
        parser.add_argument("--session", action="append", default=[], dest="sessions")
        parser.add_argument(
            "--expire",
            type=int,
            default=None,
            help="seconds to keep it for late subscribers (0: not kept)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not (
            options["broadcast"] or options["users"] or options["groups"] or options["sessions"]
        ):
            raise CommandError("name an audience: --broadcast, --user, --group or --session")
        try:
            receivers = publish(
                options["facility"],
                options["message"],
                broadcast=options["broadcast"],
                users=options["users"],
                groups=options["groups"],
                sessions=options["sessions"],
                expire=options["expire"],
            )
        except (PublishError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"published to {receivers} worker subscription(s)")
