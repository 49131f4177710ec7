import json

from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from wsloop.history import Incoming, Position
from wsloop.hub import DISPATCH_BATCH, Hub


class FakeBroker:
    """Records subscription changes; the hub's only collaborator."""

    def __init__(self):
        self.subscribed: set[str] = set()
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def subscribe(self, channels):
        self.subscribed.update(channels)
        self.calls.append(("subscribe", tuple(channels)))

    def unsubscribe(self, channels):
        self.subscribed.difference_update(channels)
        self.calls.append(("unsubscribe", tuple(channels)))


def msgs(*payloads):
    return [Incoming(payload) for payload in payloads]


class Member:
    def __init__(self, envelope=False, recovering=False):
        self.frames: list[bytes] = []
        self.held: list[tuple[str, Incoming]] = []
        self.envelope = envelope
        self.recovering = recovering

    def deliver(self, frame):
        self.frames.append(frame)

    def hold(self, channel, messages):
        self.held.extend((channel, message) for message in messages)

    def texts(self):
        peer = Connection(ConnectionType.CLIENT)
        for frame in self.frames:
            peer.receive_data(frame)
        return [e.data for e in peer.events() if isinstance(e, TextMessage)]


def test_subscribe_on_first_interest_unsubscribe_on_last():
    broker, a, b = FakeBroker(), Member(), Member()
    hub = Hub(broker)
    hub.join(a, ["c1", "c2"])
    hub.join(b, ["c1"])
    assert broker.calls == [("subscribe", ("c1", "c2"))]
    hub.leave(a, ["c1", "c2"])
    assert broker.calls[-1] == ("unsubscribe", ("c2",))
    hub.leave(b, ["c1"])
    assert broker.calls[-1] == ("unsubscribe", ("c1",))
    assert hub.channels == frozenset()


def test_one_frame_object_for_every_recipient():
    hub, members = Hub(FakeBroker()), [Member() for _ in range(3)]
    for member in members:
        hub.join(member, ["c"])
    assert hub.dispatch("c", msgs(b"hi")) == 3
    frames = [m.frames[0] for m in members]
    assert all(frame is frames[0] for frame in frames)
    assert members[0].texts() == ["hi"]


def test_dispatch_to_unknown_channel_is_a_no_op():
    assert Hub(FakeBroker()).dispatch("nobody", msgs(b"x")) == 0


def test_own_publish_skips_the_sender_once():
    hub, sender, other = Hub(FakeBroker()), Member(), Member()
    hub.join(sender, ["c"])
    hub.join(other, ["c"])
    hub.expect_own_publish(sender, "c", b"m")
    hub.dispatch("c", msgs(b"m"))
    hub.dispatch("c", msgs(b"m"))  # someone else sent the same bytes: the sender gets this one
    assert sender.texts() == ["m"]
    assert other.texts() == ["m", "m"]


def test_own_publish_matches_by_payload_not_by_position():
    hub, sender = Hub(FakeBroker()), Member()
    hub.join(sender, ["c"])
    hub.expect_own_publish(sender, "c", b"mine")
    hub.dispatch("c", msgs(b"theirs"))
    hub.dispatch("c", msgs(b"mine"))
    assert sender.texts() == ["theirs"]


def test_cancelled_and_forgotten_publishes():
    hub, sender = Hub(FakeBroker()), Member()
    hub.join(sender, ["c"])
    hub.expect_own_publish(sender, "c", b"a")
    hub.cancel_own_publish(sender, "c", b"a")
    hub.expect_own_publish(sender, "c", b"b")
    hub.forget_own_publishes()
    hub.dispatch("c", msgs(b"a"))
    hub.dispatch("c", msgs(b"b"))
    assert sender.texts() == ["a", "b"]


def test_expectation_needs_a_subscription_and_leaves_with_the_member():
    hub, sender, stayer = Hub(FakeBroker()), Member(), Member()
    hub.expect_own_publish(sender, "c", b"x")  # not subscribed: nothing to suppress
    hub.join(sender, ["c"])
    hub.join(stayer, ["c"])
    hub.expect_own_publish(sender, "c", b"y")
    hub.leave(sender, ["c"])
    hub.dispatch("c", msgs(b"x"))
    hub.dispatch("c", msgs(b"y"))
    assert stayer.texts() == ["x", "y"]


def test_member_leaving_during_dispatch_is_safe():
    hub = Hub(FakeBroker())

    class Leaver(Member):
        def deliver(self, frame):
            super().deliver(frame)
            hub.leave(self, ["c"])

    leaver, stayer = Leaver(), Member()
    hub.join(leaver, ["c"])
    hub.join(stayer, ["c"])
    assert hub.dispatch("c", msgs(b"x")) == 2
    assert hub.members_of("c") == (stayer,)


def test_consecutive_messages_are_joined_into_one_write_per_member():
    hub, a, b = Hub(FakeBroker()), Member(), Member()
    hub.join(a, ["c"])
    hub.join(b, ["c"])
    assert hub.dispatch("c", msgs(b"1", b"2", b"3")) == 6
    assert len(a.frames) == 1 and a.frames[0] is b.frames[0]
    assert a.texts() == ["1", "2", "3"]


def test_a_sender_skipping_its_own_message_gets_the_others_in_order():
    hub, sender, other = Hub(FakeBroker()), Member(), Member()
    hub.join(sender, ["c"])
    hub.join(other, ["c"])
    hub.expect_own_publish(sender, "c", b"2")
    assert hub.dispatch("c", msgs(b"1", b"2", b"3")) == 5
    assert sender.texts() == ["1", "3"]
    assert other.texts() == ["1", "2", "3"]


def test_a_run_of_only_own_messages_writes_nothing_to_the_sender():
    hub, sender = Hub(FakeBroker()), Member()
    hub.join(sender, ["c"])
    hub.expect_own_publish(sender, "c", b"mine")
    assert hub.dispatch("c", msgs(b"mine")) == 0
    assert sender.frames == []


def test_pause_is_called_between_batches_of_members():
    hub, pauses = Hub(FakeBroker()), []
    for _ in range(DISPATCH_BATCH * 2 + 1):
        hub.join(Member(), ["c"])
    hub.dispatch("c", msgs(b"x"), pause=lambda: pauses.append(1))
    assert len(pauses) == 2


def test_envelope_members_get_ids_and_audiences_bare_members_the_payload():
    hub, bare, enveloped = Hub(FakeBroker(), "p:"), Member(), Member(envelope=True)
    hub.join(bare, ["p:group:a:b:room"])
    hub.join(enveloped, ["p:group:a:b:room"])
    position = Position.parse("e1:5-0")
    hub.dispatch("p:group:a:b:room", [Incoming(b"hi", position), Incoming(b"\xff")])
    assert bare.texts() == ["hi"]
    first, second = (json.loads(t) for t in enveloped.texts())
    assert first == {"type": "message", "id": "e1:5-0", "audience": "group:a:b", "data": "hi"}
    assert second == {"type": "message", "audience": "group:a:b", "data_base64": "/w=="}


def test_recovering_members_hold_messages_instead():
    hub, recovering = Hub(FakeBroker()), Member(recovering=True)
    hub.join(recovering, ["c"])
    hub.dispatch("c", msgs(b"1", b"2"))
    assert recovering.frames == []
    assert [m.payload for _, m in recovering.held] == [b"1", b"2"]


def test_echo_comes_back_in_bus_order_with_the_senders_opcode():
    hub, sender = Hub(FakeBroker()), Member()
    hub.join(sender, ["c"])
    hub.expect_own_publish(sender, "c", b"abc", is_text=False, echo=True)
    assert hub.dispatch("c", msgs(b"before", b"abc", b"after")) == 3
    peer = Connection(ConnectionType.CLIENT)
    peer.receive_data(sender.frames[0])
    events = [(type(e).__name__, e.data) for e in peer.events()]
    assert events == [("TextMessage", "before"), ("BytesMessage", b"abc"), ("TextMessage", "after")]


def test_recovering_sender_holds_its_echo_but_not_a_skipped_message():
    hub, sender = Hub(FakeBroker()), Member(recovering=True)
    hub.join(sender, ["c"])
    hub.expect_own_publish(sender, "c", b"skipped")
    hub.expect_own_publish(sender, "c", b"echoed", echo=True)
    hub.dispatch("c", msgs(b"skipped", b"echoed"))
    assert [m.payload for _, m in sender.held] == [b"echoed"]
