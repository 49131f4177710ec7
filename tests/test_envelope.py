import json

from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from wsloop.envelope import audience_of, message_frame, resync_frame, verdict_frame
from wsloop.history import Position, Resync
from wsloop.recovery import Verdict, VerdictKind


def decode(frame: bytes) -> dict:
    peer = Connection(ConnectionType.CLIENT)
    peer.receive_data(frame)
    (event,) = peer.events()
    assert isinstance(event, TextMessage)
    return json.loads(event.data)


def test_audiences():
    assert audience_of("p:broadcast:room", "p:") == "broadcast"
    assert audience_of("user:alice:room", "") == "user"
    assert audience_of("session:k:room", "") == "session"
    assert audience_of("p:group:ops:eu:room", "p:") == "group:ops:eu"


def test_message_envelopes():
    position = Position.parse("e:1-0")
    assert decode(message_frame("é".encode(), position, "user")) == {
        "type": "message",
        "id": "e:1-0",
        "audience": "user",
        "data": "é",
    }
    assert decode(message_frame(b"\xff\x00", None, "broadcast")) == {
        "type": "message",
        "audience": "broadcast",
        "data_base64": "/wA=",
    }


def test_control_messages():
    position = Position.parse("e:9-0")
    assert decode(verdict_frame(Verdict(VerdictKind.RECOVERED, position, count=3))) == {
        "type": "recovered",
        "count": 3,
        "id": "e:9-0",
    }
    assert decode(verdict_frame(Verdict(VerdictKind.POSITION, position))) == {
        "type": "position",
        "id": "e:9-0",
    }
    assert decode(verdict_frame(Verdict(VerdictKind.POSITION, None))) == {"type": "position"}
    resync = Verdict(VerdictKind.RESYNC, position, reason=Resync.EXPIRED)
    assert decode(verdict_frame(resync)) == {"type": "resync", "reason": "expired", "id": "e:9-0"}
    assert decode(resync_frame(Resync.RESET)) == {"type": "resync", "reason": "reset"}


def test_envelopes_are_json_whatever_the_payload_and_audience_hold():
    position = Position.parse("e0:17-3")
    for payload in (
        b'quote " backslash \\ newline \n tab \t',
        "naïve ☃ 𝄞".encode(),
        b"\x00\x1f",
        b"",
    ):
        for audience in ("broadcast", 'group:a "b" \\ c', "group:é"):
            assert decode(message_frame(payload, position, audience)) == {
                "type": "message",
                "id": "e0:17-3",
                "audience": audience,
                "data": payload.decode(),
            }
