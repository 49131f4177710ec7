// Minimal demo client: two sockets (room broadcast, private notices), reconnect with backoff.
"use strict";
(function () {
  const root = document.getElementById("room");
  const statusEl = document.getElementById("status");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";

  function append(list, user, text) {
    const li = document.createElement("li");
    const who = document.createElement("span");
    who.className = "user";
    who.textContent = user;
    li.append(who, document.createTextNode(text));
    document.getElementById(list).append(li);
  }

  function connect(facility, flags, onMessage) {
    let attempt = 0;
    function open() {
      const ws = new WebSocket(`${scheme}//${location.host}/ws/${facility}?${flags}`);
      ws.onopen = () => { attempt = 0; statusEl.textContent = "live"; };
      ws.onmessage = (event) => {
        try { onMessage(JSON.parse(event.data)); } catch (e) { /* not ours */ }
      };
      ws.onclose = () => {
        statusEl.textContent = "reconnecting…";
        const delay = Math.random() * Math.min(10000, 250 * 2 ** attempt++);
        setTimeout(open, delay);
      };
    }
    open();
  }

  connect(root.dataset.facility, "subscribe-broadcast",
          (m) => append("messages", m.user, m.text));
  connect(root.dataset.notify, "subscribe-user&subscribe-group&subscribe-session",
          (m) => append("notices", `${m.kind} from ${m.from}`, m.text));

  function post(form, url) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const response = await fetch(url, { method: "POST", body: new FormData(form) });
      if (response.ok) { form.querySelector("input[name=text]").value = ""; }
    });
  }
  post(document.getElementById("chat-form"), root.dataset.sendUrl);
  post(document.getElementById("notify-form"), root.dataset.notifyUrl);
})();
