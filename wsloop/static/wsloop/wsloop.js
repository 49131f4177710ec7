// wsloop.js: the browser client of wsloop. Dependency-free ES module; wsloop.classic.js is the
// same code for a plain <script> tag (window.WSLoop, window.WS4Redis). Types: wsloop.d.ts.
//
// Contract:
// - connect() opens /ws/<facility>?<flags>; on every close that the page did not ask for, it
//   reconnects after an exponential backoff with full jitter: a random delay in
//   [0, min(maxDelayMs, baseDelayMs * 2^attempt)], attempt counting failures since the last
//   open. A server closing with 1008 (policy) or 4003 (forbidden) is not retried.
// - A connection that receives nothing (no message, no heartbeat) for heartbeatTimeoutMs is
//   taken as dead, closed and reconnected: a dead peer is noticed within that bound plus one
//   timer tick, even when no TCP close ever arrives.
// - With the "envelope" flag, every message carries an id; the client remembers the last one
//   and reconnects with ?since=<id>; the server then replays what was missed ("recovered") or
//   says it cannot ("resync": reload your state). A first connection learns its position at
//   once ("position"), so it resumes without a gap even if it drops before its first message;
//   a page rendered by Django passes wsloop.position(facility) as lastId, so nothing published
//   between the render and the connect is missed. Control messages of types this client does
//   not know are ignored. Without "envelope", messages are the bare payloads of ws4redis and
//   nothing is replayed.
// - Heartbeat messages (heartbeatMessage, the server's WSLOOP_HEARTBEAT) reset the dead-peer
//   timer and are never delivered as messages.

"use strict";

/** Delay before reconnect attempt `attempt` (0-based): full jitter over a capped exponential.
 * @param {number} attempt
 * @param {{baseDelayMs: number, maxDelayMs: number}} options
 * @param {() => number} [random] uniform in [0, 1)
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, options, random = Math.random) {
  const ceiling = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** Watches a connection for signs of life; `dead(now)` says whether it has been silent too long.
 * Time is passed in, so the logic is testable without timers. */
export class LivenessMonitor {
  /** @param {number} timeoutMs silence after which the connection is dead (0: never) */
  constructor(timeoutMs) {
    this.timeoutMs = timeoutMs;
    this.lastSeen = 0;
  }

  /** @param {number} now */
  seen(now) {
    this.lastSeen = now;
  }

  /** @param {number} now */
  dead(now) {
    return this.timeoutMs > 0 && now - this.lastSeen > this.timeoutMs;
  }
}

const DEFAULTS = {
  url: null,
  facility: "",
  flags: ["subscribe-broadcast"],
  baseDelayMs: 500,
  maxDelayMs: 30000,
  heartbeatMessage: null,
  random: Math.random,
  heartbeatTimeoutMs: 0,
  livenessCheckMs: 1000,
  reconnect: true,
};

const NO_RETRY_CODES = new Set([1008, 4003]);
// ws4redis.js options carry no timeout: with heartbeat_msg set, 20 s of silence ends a connection.
const WS4REDIS_HEARTBEAT_TIMEOUT_MS = 20000;

/** One logical connection to a facility, surviving reconnects.
 * Events (addEventListener or on*): open, message, close, reconnecting, position, recovered,
 * resync, presence. */
export class WSLoop extends EventTarget {
  /** @param {object} options WSLoopOptions in wsloop.d.ts */
  constructor(options) {
    super();
    this.options = { ...DEFAULTS, ...options };
    /** @type {string | null} */
    this.lastId = this.options.lastId ?? null;
    this.attempt = 0;
    this.socket = null;
    this.closedByPage = false;
    this.liveness = new LivenessMonitor(this.options.heartbeatTimeoutMs);
    this._timers = this.options.timers ?? globalThis;
    this._WebSocket = this.options.WebSocket ?? globalThis.WebSocket;
    this._now = this.options.now ?? (() => Date.now());
    this._reconnectTimer = null;
    this._livenessTimer = null;
  }

  get envelope() {
    return this.options.flags.includes("envelope");
  }

  /** The URL of the next connection attempt (with since= when there is an id to resume from). */
  url() {
    const base = this.options.url ?? defaultBase();
    const flags = [...this.options.flags];
    if (this.envelope && this.lastId) flags.push(`since=${encodeURIComponent(this.lastId)}`);
    return `${base}${this.options.facility}?${flags.join("&")}`;
  }

  /** Open the connection (a no-op while one is open or being retried). */
  connect() {
    this.closedByPage = false;
    if (!this.socket && this._reconnectTimer === null) this._open();
    return this;
  }

  /** @param {string | ArrayBuffer | ArrayBufferView | Blob} data */
  send(data) {
    if (!this.socket || this.socket.readyState !== 1) return false;
    this.socket.send(data);
    return true;
  }

  /** Close for good: no reconnect. */
  close(code = 1000, reason = "") {
    this.closedByPage = true;
    this._clearTimers();
    if (this.socket) this.socket.close(code, reason);
  }

  _open() {
    const socket = new this._WebSocket(this.url());
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this.liveness.seen(this._now());
      this._watchLiveness();
      this._emit("open", { url: socket.url });
    };
    // A socket given up on (no heartbeat) may still deliver late: only the current one counts.
    socket.onmessage = (event) => socket === this.socket && this._receive(event.data);
    socket.onclose = (event) => this._closed(socket, event);
  }

  _receive(data) {
    this.liveness.seen(this._now());
    if (data === this.options.heartbeatMessage) return;
    if (!this.envelope || typeof data !== "string") {
      this._emit("message", { data });
      return;
    }
    let body;
    try {
      body = JSON.parse(data);
    } catch {
      this._emit("message", { data });
      return;
    }
    if (body.type === "message") {
      if (body.id) this.lastId = body.id;
      const payload = "data_base64" in body ? base64Bytes(body.data_base64) : body.data;
      this._emit("message", { data: payload, id: body.id ?? null, audience: body.audience });
    } else if (body.type === "position") {
      this.lastId = body.id ?? null;
      this._emit("position", { id: this.lastId });
    } else if (body.type === "recovered") {
      if (body.id) this.lastId = body.id;
      this._emit("recovered", { count: body.count, id: body.id ?? null });
    } else if (body.type === "resync") {
      this.lastId = body.id ?? null;
      this._emit("resync", { reason: body.reason, id: this.lastId });
    } else if (body.type === "join" || body.type === "leave") {
      this._emit("presence", { type: body.type, user: body.user, client: body.client });
    }
  }

  _closed(socket, event) {
    if (socket !== this.socket) return;
    this._clearTimers();
    this.socket = null;
    this._emit("close", { code: event.code, reason: event.reason, wasClean: event.wasClean });
    if (this.closedByPage || !this.options.reconnect || NO_RETRY_CODES.has(event.code)) return;
    const delay = backoffDelay(this.attempt, this.options, this.options.random);
    this.attempt += 1;
    this._emit("reconnecting", { attempt: this.attempt, delayMs: delay });
    this._reconnectTimer = this._timers.setTimeout(() => {
      this._reconnectTimer = null;
      this._open();
    }, delay);
  }

  _watchLiveness() {
    if (!this.options.heartbeatTimeoutMs) return;
    this._livenessTimer = this._timers.setInterval(() => {
      if (this.socket && this.liveness.dead(this._now())) {
        const socket = this.socket;
        socket.close(4000, "no heartbeat");
        // A dead peer never answers the close: do not wait for the browser to give up.
        this._closed(socket, { code: 1006, reason: "no heartbeat", wasClean: false });
      }
    }, this.options.livenessCheckMs);
  }

  _clearTimers() {
    if (this._reconnectTimer !== null) this._timers.clearTimeout(this._reconnectTimer);
    if (this._livenessTimer !== null) this._timers.clearInterval(this._livenessTimer);
    this._reconnectTimer = this._livenessTimer = null;
  }

  _emit(type, detail) {
    const event = new CustomEvent(type, { detail });
    const handler = this[`on${type}`];
    if (typeof handler === "function") handler.call(this, event);
    this.dispatchEvent(event);
  }
}

/** The ws4redis.js API on top of WSLoop: new WS4Redis({uri, connecting, connected,
 * receive_message, disconnected, heartbeat_msg}), .send_message(text), .close(). */
export class WS4Redis {
  constructor(options) {
    const url = new URL(options.uri, typeof location === "undefined" ? undefined : location.href);
    const facility = url.pathname.split("/").pop();
    const base = `${url.protocol}//${url.host}${url.pathname.slice(0, -facility.length)}`;
    this.client = new WSLoop({
      url: base,
      facility,
      flags: url.search.slice(1).split("&").filter(Boolean),
      heartbeatMessage: options.heartbeat_msg ?? null,
      heartbeatTimeoutMs: options.heartbeat_msg ? WS4REDIS_HEARTBEAT_TIMEOUT_MS : 0,
    });
    const call = (name, ...args) => typeof options[name] === "function" && options[name](...args);
    this.client.onopen = () => call("connected");
    this.client.onreconnecting = () => call("connecting");
    this.client.onclose = (event) => call("disconnected", event.detail);
    this.client.onmessage = (event) => call("receive_message", event.detail.data);
    call("connecting");
    this.client.connect();
  }

  send_message(message) {
    return this.client.send(message);
  }

  close() {
    this.client.close();
  }
}

function defaultBase() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/`;
}

function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}
