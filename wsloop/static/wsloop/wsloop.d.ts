// Types of wsloop.js (ES module) and wsloop.classic.js (window.WSLoop, window.WS4Redis).

/** A flag of the wsloop wire contract, e.g. "subscribe-broadcast", "publish-user", "echo",
 * "envelope", "presence". */
export type Flag = string;

export interface WSLoopOptions {
  /** Websocket base URL ending in "/", default ws(s)://<this host>/ws/ */
  url?: string | null;
  /** The facility: letters, digits, "-", "_", "." */
  facility: string;
  /** Default ["subscribe-broadcast"]. Add "envelope" for ids, recovery and presence events. */
  flags?: Flag[];
  /** First reconnect delay ceiling, default 500 ms; doubles per failed attempt. */
  baseDelayMs?: number;
  /** Reconnect delay ceiling, default 30000 ms. */
  maxDelayMs?: number;
  /** The server's WSLOOP_HEARTBEAT text: never delivered as a message. */
  heartbeatMessage?: string | null;
  /** Silence after which the connection is taken as dead; 0 (default) never. Set it above the
   * server's heartbeat interval (WSLOOP_HEARTBEAT_INTERVAL_S), e.g. three intervals. */
  heartbeatTimeoutMs?: number;
  /** How often silence is checked, default 1000 ms. */
  livenessCheckMs?: number;
  /** Reconnect after unexpected closes, default true. */
  reconnect?: boolean;
  /** Resume after this position (envelope only): the last message id seen, or the
   * wsloop.position(facility) a page was rendered with. */
  lastId?: string | null;
  /** For tests: injected WebSocket class, timers, clock and randomness. */
  WebSocket?: typeof WebSocket;
  timers?: Pick<typeof globalThis, "setTimeout" | "clearTimeout" | "setInterval" | "clearInterval">;
  now?: () => number;
  random?: () => number;
}

export interface MessageDetail {
  /** Text, or an ArrayBuffer for binary messages. */
  data: string | ArrayBuffer;
  /** History position (envelope only; null for raw PUBLISHes). */
  id?: string | null;
  /** "broadcast", "user", "session" or "group:<name>" (envelope only). */
  audience?: string;
}
export interface CloseDetail { code: number; reason: string; wasClean: boolean }
export interface ReconnectingDetail { attempt: number; delayMs: number }
/** Where a connection without since starts (null: the facility keeps no history). */
export interface PositionDetail { id: string | null }
export interface RecoveredDetail { count: number; id: string | null }
/** History could not fill the gap: reload your state; messages after id follow. */
export interface ResyncDetail { reason: "reset" | "expired" | "unavailable"; id: string | null }
export interface PresenceDetail { type: "join" | "leave"; user: string; client: string }

export interface WSLoopEventMap {
  open: CustomEvent<{ url: string }>;
  message: CustomEvent<MessageDetail>;
  close: CustomEvent<CloseDetail>;
  reconnecting: CustomEvent<ReconnectingDetail>;
  position: CustomEvent<PositionDetail>;
  recovered: CustomEvent<RecoveredDetail>;
  resync: CustomEvent<ResyncDetail>;
  presence: CustomEvent<PresenceDetail>;
}

export function backoffDelay(
  attempt: number,
  options: { baseDelayMs: number; maxDelayMs: number },
  random?: () => number,
): number;

export class LivenessMonitor {
  constructor(timeoutMs: number);
  timeoutMs: number;
  lastSeen: number;
  seen(now: number): void;
  dead(now: number): boolean;
}

export class WSLoop extends EventTarget {
  constructor(options: WSLoopOptions);
  readonly options: Required<Omit<WSLoopOptions, "lastId" | "WebSocket" | "timers" | "now">>;
  /** The id of the last message received (envelope only). */
  lastId: string | null;
  /** Failed attempts since the last open. */
  attempt: number;
  readonly envelope: boolean;
  url(): string;
  connect(): this;
  /** False when not connected (nothing is queued). */
  send(data: string | ArrayBuffer | ArrayBufferView | Blob): boolean;
  close(code?: number, reason?: string): void;
  addEventListener<K extends keyof WSLoopEventMap>(
    type: K,
    listener: (event: WSLoopEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  onopen?: (event: WSLoopEventMap["open"]) => void;
  onmessage?: (event: WSLoopEventMap["message"]) => void;
  onclose?: (event: WSLoopEventMap["close"]) => void;
  onreconnecting?: (event: WSLoopEventMap["reconnecting"]) => void;
  onposition?: (event: WSLoopEventMap["position"]) => void;
  onrecovered?: (event: WSLoopEventMap["recovered"]) => void;
  onresync?: (event: WSLoopEventMap["resync"]) => void;
  onpresence?: (event: WSLoopEventMap["presence"]) => void;
}

/** ws4redis.js's constructor options. */
export interface WS4RedisOptions {
  uri: string;
  connecting?: () => void;
  connected?: () => void;
  receive_message?: (message: string | ArrayBuffer) => void;
  disconnected?: (detail: CloseDetail) => void;
  heartbeat_msg?: string | null;
}

export class WS4Redis {
  constructor(options: WS4RedisOptions);
  readonly client: WSLoop;
  send_message(message: string | ArrayBuffer): boolean;
  close(): void;
}
