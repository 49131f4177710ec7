import json

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

import wsloop

ROOM_FACILITY = "chat-{room}"
NOTIFY_FACILITY = "notify"
MAX_TEXT_CHARS = 2000
ROOMS = ("lobby", "random", "ops")  # listed in the page; any slug is a room
HEARTBEATS_BEFORE_DEAD = 3  # the page gives a silent connection up after this many intervals


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"redis": False, "database": False}
    try:
        cache.set("healthz", "ok", 5)
        checks["redis"] = cache.get("healthz") == "ok"
    except Exception:  # any cache failure means unhealthy, whatever its type
        checks["redis"] = False
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = True
    except Exception:
        checks["database"] = False
    healthy = all(checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "degraded", **checks}, status=200 if healthy else 503
    )


@login_required
def index(request: HttpRequest) -> HttpResponse:
    return redirect("room", room="lobby")


@login_required
def room(request: HttpRequest, room: str) -> HttpResponse:
    facility = ROOM_FACILITY.format(room=room)
    heartbeat = getattr(settings, "WSLOOP_HEARTBEAT", None)
    interval_ms = getattr(settings, "WSLOOP_HEARTBEAT_INTERVAL_S", 0) * 1000
    return render(
        request,
        "chat/room.html",
        {
            "room": room,
            "rooms": ROOMS,
            "facility": facility,
            "notify_facility": NOTIFY_FACILITY,
            "groups": sorted(request.user.groups.values_list("name", flat=True)),
            "online": sorted(wsloop.presence(facility).items()),
            # The page's sockets resume from here: nothing published after the render is missed.
            "room_position": wsloop.position(facility) or "",
            "notify_position": wsloop.position(NOTIFY_FACILITY) or "",
            "heartbeat": heartbeat or "",
            "heartbeat_timeout_ms": int(interval_ms * HEARTBEATS_BEFORE_DEAD) if heartbeat else 0,
        },
    )


def _text(request: HttpRequest) -> str:
    return request.POST.get("text", "").strip()[:MAX_TEXT_CHARS]


@login_required
@require_POST
def send(request: HttpRequest, room: str) -> JsonResponse:
    text = _text(request)
    if not text:
        return JsonResponse({"error": "empty message"}, status=400)
    message = json.dumps({"kind": "chat", "user": request.user.get_username(), "text": text})
    wsloop.publish(ROOM_FACILITY.format(room=room), message, broadcast=True, expire=0)
    return JsonResponse({"ok": True})


@login_required
@require_POST
def notify(request: HttpRequest) -> JsonResponse:
    """A private notice to one user, a group, or this browser session."""
    text, target, name = _text(request), request.POST.get("target"), request.POST.get("name", "")
    if not text or target not in {"user", "group", "session"}:
        return JsonResponse({"error": "need text and target user, group or session"}, status=400)
    audience = {
        "user": {"users": [name]},
        "group": {"groups": [name]},
        "session": {"sessions": [wsloop.SELF]},
    }[target]
    message = json.dumps({"kind": target, "from": request.user.get_username(), "text": text})
    receivers = wsloop.publish(NOTIFY_FACILITY, message, request=request, expire=0, **audience)
    return JsonResponse({"ok": True, "workers": receivers})


@login_required
@require_POST
def announce(request: HttpRequest) -> JsonResponse:
    """A staff-only broadcast: every signed-in page shows it."""
    if not request.user.is_staff:
        return JsonResponse({"error": "staff only"}, status=403)
    text = _text(request)
    if not text:
        return JsonResponse({"error": "empty announcement"}, status=400)
    sender = request.user.get_username()
    message = json.dumps({"kind": "announcement", "from": sender, "text": text})
    receivers = wsloop.publish(NOTIFY_FACILITY, message, broadcast=True, expire=0)
    return JsonResponse({"ok": True, "workers": receivers})
