// Unit tests of wsloop.js (node --test): backoff, liveness, reconnects, envelope and ws4redis
// options, with a scripted WebSocket, timers and clock (no network).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  LivenessMonitor,
  WS4Redis,
  WSLoop,
  backoffDelay,
} from "../../wsloop/static/wsloop/wsloop.js";

class FakeSocket {
  static instances = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.instances.push(this);
  }
  send(data) { this.sent.push(data); }
  close(code, reason) { this.closedWith = { code, reason }; }
  // driven by the tests:
  open() { this.readyState = 1; this.onopen?.({}); }
  receive(data) { this.onmessage?.({ data }); }
  drop(code = 1006) { this.readyState = 3; this.onclose?.({ code, reason: "", wasClean: false }); }
}

class FakeTimers {
  constructor() { this.pending = new Map(); this.next = 1; }
  setTimeout(fn, ms) { const id = this.next++; this.pending.set(id, { fn, ms, repeat: false }); return id; }
  setInterval(fn, ms) { const id = this.next++; this.pending.set(id, { fn, ms, repeat: true }); return id; }
  clearTimeout(id) { this.pending.delete(id); }
  clearInterval(id) { this.pending.delete(id); }
  delays() { return [...this.pending.values()].filter((t) => !t.repeat).map((t) => t.ms); }
  fireTimeouts() {
    for (const [id, t] of [...this.pending]) if (!t.repeat) { this.pending.delete(id); t.fn(); }
  }
  fireIntervals() { for (const t of [...this.pending.values()]) if (t.repeat) t.fn(); }
}

function client(options = {}) {
  FakeSocket.instances = [];
  const timers = new FakeTimers();
  const clock = { now: 1000 };
  const events = [];
  const ws = new WSLoop({
    url: "ws://host/ws/",
    facility: "news",
    WebSocket: FakeSocket,
    timers,
    now: () => clock.now,
    random: () => 0.5,
    ...options,
  });
  for (const type of ["open", "message", "close", "reconnecting", "position", "recovered", "resync", "presence"]) {
    ws.addEventListener(type, (event) => events.push([type, event.detail]));
  }
  ws.connect();
  const socket = () => FakeSocket.instances.at(-1);
  return { ws, timers, clock, events, socket };
}

test("backoff: full jitter under a doubling ceiling, capped", () => {
  const options = { baseDelayMs: 100, maxDelayMs: 1000 };
  assert.equal(backoffDelay(0, options, () => 0), 0);
  assert.equal(backoffDelay(0, options, () => 0.999), 99);
  assert.equal(backoffDelay(3, options, () => 0.5), 400);
  assert.equal(backoffDelay(4, options, () => 0.999), 999);
  assert.equal(backoffDelay(50, options, () => 0.999), 999);
  for (let attempt = 0; attempt < 12; attempt += 1) {
    const delay = backoffDelay(attempt, options);
    assert.ok(delay >= 0 && delay < Math.min(1000, 100 * 2 ** attempt), `${attempt}: ${delay}`);
  }
});

test("liveness: dead only after the timeout, never with 0", () => {
  const monitor = new LivenessMonitor(3000);
  monitor.seen(10_000);
  assert.equal(monitor.dead(13_000), false);
  assert.equal(monitor.dead(13_001), true);
  monitor.seen(13_001);
  assert.equal(monitor.dead(13_002), false);
  assert.equal(new LivenessMonitor(0).dead(1e12), false);
});

test("reconnects with growing delays, and starts over after an open", () => {
  const { timers, socket, events } = client({ baseDelayMs: 100, maxDelayMs: 10_000 });
  socket().open();
  socket().drop();
  assert.deepEqual(timers.delays(), [50]); // attempt 0: 0.5 * 100
  timers.fireTimeouts();
  socket().drop();
  assert.deepEqual(timers.delays(), [100]); // attempt 1: 0.5 * 200
  timers.fireTimeouts();
  socket().open();
  socket().drop();
  assert.deepEqual(timers.delays(), [50]);
  assert.equal(FakeSocket.instances.length, 3);
  assert.deepEqual(
    events.filter(([type]) => type === "reconnecting").map(([, d]) => d.attempt),
    [1, 2, 1],
  );
});

test("close() by the page and policy refusals do not reconnect", () => {
  const refused = client();
  refused.socket().drop(4003);
  assert.deepEqual(refused.timers.delays(), []);
  const closed = client();
  closed.socket().open();
  closed.ws.close();
  closed.socket().drop(1000);
  assert.deepEqual(closed.timers.delays(), []);
});

test("a silent connection is given up after the heartbeat timeout", () => {
  const { timers, clock, socket, events } = client({
    heartbeatMessage: "--hb--",
    heartbeatTimeoutMs: 3000,
  });
  socket().open();
  clock.now += 2500;
  socket().receive("--hb--"); // a heartbeat keeps it alive and is not a message
  clock.now += 2500;
  timers.fireIntervals();
  assert.equal(socket().closedWith, null);
  clock.now += 600;
  timers.fireIntervals();
  assert.deepEqual(socket().closedWith, { code: 4000, reason: "no heartbeat" });
  assert.equal(events.filter(([type]) => type === "message").length, 0);
  assert.deepEqual(events.at(-1)[0], "reconnecting");
  const stale = socket();
  timers.fireTimeouts();
  assert.notEqual(socket(), stale);
  stale.receive("late"); // the abandoned socket is ignored from now on
  stale.drop();
  assert.equal(events.filter(([type]) => type === "message").length, 0);
});

test("envelope: ids are kept and sent back as since= on reconnect", () => {
  const { ws, timers, socket, events } = client({ flags: ["subscribe-broadcast", "envelope"] });
  assert.equal(socket().url, "ws://host/ws/news?subscribe-broadcast&envelope");
  socket().open();
  socket().receive(JSON.stringify({ type: "position", id: "e1:4-0" }));
  assert.equal(ws.lastId, "e1:4-0");
  socket().receive(JSON.stringify({ type: "message", id: "e1:5-0", audience: "broadcast", data: "hi" }));
  socket().receive(JSON.stringify({ type: "join", user: "bob", client: "c1" }));
  assert.equal(ws.lastId, "e1:5-0");
  socket().drop();
  timers.fireTimeouts();
  assert.equal(socket().url, "ws://host/ws/news?subscribe-broadcast&envelope&since=e1%3A5-0");
  socket().open();
  socket().receive(JSON.stringify({ type: "recovered", count: 2, id: "e1:7-0" }));
  assert.equal(ws.lastId, "e1:7-0");
  socket().receive(JSON.stringify({ type: "resync", reason: "expired", id: "e1:9-0" }));
  assert.equal(ws.lastId, "e1:9-0");
  socket().receive(JSON.stringify({ type: "resync", reason: "unavailable" }));
  assert.equal(ws.lastId, null);
  socket().receive(JSON.stringify({ type: "from-a-newer-server", id: "x" }));
  assert.equal(ws.lastId, null);
  assert.deepEqual(events.filter(([type]) => type !== "open" && type !== "close" && type !== "reconnecting"), [
    ["position", { id: "e1:4-0" }],
    ["message", { data: "hi", id: "e1:5-0", audience: "broadcast" }],
    ["presence", { type: "join", user: "bob", client: "c1" }],
    ["recovered", { count: 2, id: "e1:7-0" }],
    ["resync", { reason: "expired", id: "e1:9-0" }],
    ["resync", { reason: "unavailable", id: null }],
  ]);
});

test("a page rendered with its position resumes from it on the first connect", () => {
  const { socket } = client({ flags: ["subscribe-broadcast", "envelope"], lastId: "e1:3-0" });
  assert.equal(socket().url, "ws://host/ws/news?subscribe-broadcast&envelope&since=e1%3A3-0");
});

test("binary envelope payloads arrive as ArrayBuffer", () => {
  const { socket, events } = client({ flags: ["envelope"] });
  socket().open();
  socket().receive(JSON.stringify({ type: "message", audience: "user", data_base64: "AAH/" }));
  const [, detail] = events.find(([type]) => type === "message");
  assert.deepEqual([...new Uint8Array(detail.data)], [0, 1, 255]);
});

test("without envelope, payloads are delivered as they are (ws4redis)", () => {
  const { socket, events } = client();
  socket().open();
  socket().receive('{"type": "message"}');
  assert.deepEqual(events.at(-1), ["message", { data: '{"type": "message"}' }]);
});

test("connect() while connected or waiting to retry opens nothing more", () => {
  const { ws, timers } = client();
  ws.connect();
  assert.equal(FakeSocket.instances.length, 1);
  FakeSocket.instances[0].drop();
  ws.connect();
  assert.equal(FakeSocket.instances.length, 1);
  timers.fireTimeouts();
  assert.equal(FakeSocket.instances.length, 2);
});

test("send() only while open", () => {
  const { ws, socket } = client();
  assert.equal(ws.send("early"), false);
  socket().open();
  assert.equal(ws.send("now"), true);
  assert.deepEqual(socket().sent, ["now"]);
});

test("WS4Redis takes ws4redis.js options", () => {
  const calls = [];
  globalThis.WebSocket = FakeSocket;
  try {
    FakeSocket.instances = [];
    const ws4 = new WS4Redis({
      uri: "ws://host/ws/foobar?subscribe-broadcast&publish-broadcast&echo",
      connecting: () => calls.push("connecting"),
      connected: () => calls.push("connected"),
      receive_message: (m) => calls.push(`got ${m}`),
      disconnected: () => calls.push("disconnected"),
      heartbeat_msg: "--heartbeat--",
    });
    const socket = FakeSocket.instances.at(-1);
    assert.equal(socket.url, "ws://host/ws/foobar?subscribe-broadcast&publish-broadcast&echo");
    socket.open();
    socket.receive("--heartbeat--");
    socket.receive("hello");
    assert.equal(ws4.send_message("out"), true);
    ws4.close();
    socket.drop(1000);
    assert.deepEqual(calls, ["connecting", "connected", "got hello", "disconnected"]);
  } finally {
    delete globalThis.WebSocket;
  }
});
