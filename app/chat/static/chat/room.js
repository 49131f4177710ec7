// The demo page: a chat room (live messages, recovery after reconnects, who is online) and a
// notifications panel (private, group, session and staff notices), on wsloop.js.
import { WSLoop } from "../wsloop/wsloop.js";

const root = document.getElementById("room");
const statusEl = document.getElementById("status");
const heartbeat = {
  heartbeatMessage: root.dataset.heartbeat || null,
  heartbeatTimeoutMs: Number(root.dataset.heartbeatTimeoutMs) || 0,
};

function setStatus(state, text) {
  statusEl.dataset.state = state;
  statusEl.textContent = text;
}

function append(listId, who, text, kind = "") {
  const li = document.createElement("li");
  if (kind) li.className = kind;
  const user = document.createElement("span");
  user.className = "user";
  user.textContent = who;
  li.append(user, document.createTextNode(text));
  const list = document.getElementById(listId);
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function parse(data) {
  try {
    return JSON.parse(data);
  } catch {
    return null;
  }
}

// Who is online: sockets per user, from the page's snapshot, then join and leave events.
const online = new Map(
  [...document.querySelectorAll("#online li")].map((li) => [li.dataset.user, Number(li.dataset.sockets)]),
);
function renderOnline() {
  const list = document.getElementById("online");
  list.replaceChildren(
    ...[...online.keys()].sort().map((user) => {
      const li = document.createElement("li");
      li.dataset.user = user;
      li.textContent = user;
      return li;
    }),
  );
}

// Both sockets resume from the positions the page was rendered with (wsloop.position): what was
// published between the render and the connect arrives as "recovered".
const room = new WSLoop({
  facility: root.dataset.facility,
  flags: ["subscribe-broadcast", "envelope", "presence"],
  lastId: root.dataset.since || null,
  ...heartbeat,
});
room.onopen = () => setStatus("live", "live");
room.onreconnecting = (event) =>
  setStatus("reconnecting", `reconnecting in ${(event.detail.delayMs / 1000).toFixed(1)} s…`);
room.onrecovered = (event) => {
  const { count } = event.detail;
  setStatus("live", count ? `live · recovered ${count} missed` : "live");
};
room.onresync = () => setStatus("live", "live · some messages may be missing");
room.onmessage = (event) => {
  const message = parse(event.detail.data);
  if (message && message.kind === "chat") append("messages", message.user, message.text);
};
room.onpresence = (event) => {
  const { type, user } = event.detail;
  const sockets = (online.get(user) || 0) + (type === "join" ? 1 : -1);
  if (sockets > 0) online.set(user, sockets);
  else online.delete(user);
  renderOnline();
};
room.connect();

const notices = new WSLoop({
  facility: root.dataset.notify,
  flags: ["subscribe-broadcast", "subscribe-user", "subscribe-group", "subscribe-session", "envelope"],
  lastId: root.dataset.notifySince || null,
  ...heartbeat,
});
notices.onmessage = (event) => {
  const notice = parse(event.detail.data);
  if (!notice) return;
  const labels = { user: "private", group: "group", session: "session", announcement: "announcement" };
  append("notices", `${labels[notice.kind] ?? notice.kind} · ${notice.from}`, notice.text, notice.kind);
};
notices.connect();

function postForm(form, url) {
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await fetch(url, { method: "POST", body: new FormData(form) });
    if (response.ok) form.querySelector("input[name=text]").value = "";
  });
}
postForm(document.getElementById("chat-form"), root.dataset.sendUrl);
postForm(document.getElementById("notify-form"), root.dataset.notifyUrl);
postForm(document.getElementById("announce-form"), root.dataset.announceUrl);
