// kubetask dashboard: sign-in with an API key (kept in this tab's sessionStorage), the key on every htmx
// request, and live updates read from the SSE stream /api/v1/tasks/events (fetch, so the key travels in a
// header and never in a URL). A change refreshes the panels it touches; nothing polls.
(function () {
  "use strict";
  const KEY = "kubetask.apiKey";
  const body = document.body;
  const page = body.dataset.page;
  const taskId = body.dataset.taskId || null;
  const live = { events: 0, lastEventId: null, connected: false, resets: 0 };
  window.ktLive = live;
  let controller = null;

  const $ = (id) => document.getElementById(id);
  const apiKey = () => sessionStorage.getItem(KEY);

  function setLive(state, text) {
    const el = $("live-state");
    el.dataset.state = state;
    el.textContent = text;
  }

  function showLogin(message) {
    if (controller) controller.abort();
    $("app").hidden = true;
    $("sign-out").hidden = true;
    $("who").textContent = "";
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    setLive("off", "offline");
  }

  async function whoAmI(key) {
    const response = await fetch("/api/v1/users/me/limits", { headers: { "X-API-Key": key } });
    if (response.status === 401) return null;
    if (!response.ok) throw new Error("the API answered " + response.status);
    return response.json();
  }

  async function start() {
    if (document.readyState === "loading") {  // let htmx process the page first
      await new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve, { once: true }));
    }
    const key = apiKey();
    if (!key) return showLogin();
    let me;
    try {
      me = await whoAmI(key);
    } catch (error) {
      return showLogin("Cannot reach the API: " + error.message);
    }
    if (!me) {
      sessionStorage.removeItem(KEY);
      return showLogin("That API key is not valid.");
    }
    $("login").hidden = true;
    $("app").hidden = false;
    $("sign-out").hidden = false;
    $("who").textContent = "signed in as " + me.user_id;
    htmx.trigger(body, "kt:ready");
    follow();
  }

  // ------------------------------------------------------------------ live updates (SSE over fetch)

  function changed(kind, task) {
    live.events += 1;
    if (task && task.id) {
      for (const row of document.querySelectorAll('[data-task-id="' + CSS.escape(task.id) + '"] .badge')) {
        row.textContent = task.status;  // at once; the panel refresh follows (debounced)
        row.className = "badge " + task.status;
      }
    }
    htmx.trigger(body, "kt:changed", { kind: kind, task: task });
    if (taskId && task && task.id === taskId) htmx.trigger(body, "kt:this-task", { kind: kind });
  }

  function dispatch(event) {
    if (event.id) live.lastEventId = event.id;
    if (event.type === "ready") return;
    if (event.type === "reset") {
      live.resets += 1;
      return changed("reset", null);
    }
    if (event.type === "overflow") throw new Error("overflow");
    if (!event.data) return;
    changed(event.type, JSON.parse(event.data));
  }

  async function follow() {
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = controller;
    while (!mine.signal.aborted) {
      const headers = { "X-API-Key": apiKey() || "", "Accept": "text/event-stream" };
      if (live.lastEventId) headers["Last-Event-ID"] = live.lastEventId;
      try {
        const path = taskId ? "/api/v1/tasks/" + encodeURIComponent(taskId) + "/events" : "/api/v1/tasks/events";
        const response = await fetch(path, { headers: headers, signal: mine.signal, cache: "no-store" });
        if (response.status === 401) return showLogin("Your API key is no longer valid.");
        if (!response.ok) throw new Error("HTTP " + response.status);
        live.connected = true;
        setLive("on", "live");
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        let event = { type: "message", data: "", id: null };
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n")) >= 0) {
            const line = buffer.slice(0, cut).replace(/\r$/, "");
            buffer = buffer.slice(cut + 1);
            if (line === "") {
              if (event.data || event.type !== "message") dispatch(event);
              event = { type: "message", data: "", id: null };
            } else if (!line.startsWith(":")) {
              const colon = line.indexOf(":");
              const field = colon < 0 ? line : line.slice(0, colon);
              const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
              if (field === "event") event.type = text;
              else if (field === "data") event.data = event.data ? event.data + "\n" + text : text;
              else if (field === "id") event.id = text;
            }
          }
        }
      } catch (error) {
        if (mine.signal.aborted) return;
      }
      live.connected = false;
      setLive("retry", "reconnecting…");
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

  // ------------------------------------------------------------------ wiring

  document.addEventListener("htmx:configRequest", (e) => {
    const key = apiKey();
    if (key) e.detail.headers["X-API-Key"] = key;
  });
  document.addEventListener("htmx:responseError", (e) => {
    if (e.detail.xhr.status === 401) {
      sessionStorage.removeItem(KEY);
      showLogin("Please sign in again.");
    } else if (e.detail.xhr.status === 404 && page === "task") {
      e.detail.target.textContent = "Task " + taskId + " not found.";
    }
  });

  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    $("api-key").value = "";
    await start();
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    showLogin("Signed out.");
  });

  const form = $("submit-form");
  if (form) {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const out = $("submit-result");
      let annotations = {};
      try {
        annotations = JSON.parse($("submit-annotations").value || "{}");
      } catch (error) {
        out.textContent = "Pod annotations must be a JSON object: " + error.message;
        return;
      }
      const task = {
        name: $("submit-name").value,
        image: $("submit-image").value,
        priority: Number($("submit-priority").value || 5),
        resources: { gpus: Number($("submit-gpus").value || 0) },
        annotations: annotations,
      };
      const command = $("submit-command").value.trim();
      if (command) task.command = ["sh", "-c", command];
      const response = await fetch("/api/v1/tasks", {
        method: "POST",
        headers: { "X-API-Key": apiKey() || "", "Content-Type": "application/json" },
        body: JSON.stringify(task),
      });
      const answer = await response.json();
      if (!response.ok) {
        out.textContent = "Refused (" + response.status + "): " + answer.detail;
        out.className = "note bad";
        return;
      }
      out.className = "note";
      out.textContent = "Submitted ";
      const link = document.createElement("a");
      link.href = "/ui/tasks/" + encodeURIComponent(answer.id);
      link.textContent = answer.id;
      link.id = "submitted-link";
      out.appendChild(link);
    });
  }

  start();
})();
