// Live customer view: the server pushes the re-rendered view over SSE; no reloads.
(() => {
  "use strict";
  const view = document.getElementById("view");
  if (!view || !view.dataset.live) return;
  const fresh = document.getElementById("freshness");
  const state = document.getElementById("live-state");
  const announce = document.getElementById("announce");
  const setState = (on, text) => {
    state.className = on ? "live on" : "live off";
    state.textContent = text;
  };
  const ids = () => new Set([...view.querySelectorAll("[data-event-id]")].map((li) => li.dataset.eventId));
  const source = new EventSource(view.dataset.live);
  source.addEventListener("open", () => setState(true, "Live"));
  source.addEventListener("error", () => setState(false, "Reconnecting…"));
  source.addEventListener("view", (event) => {
    const data = JSON.parse(event.data);
    const before = ids();
    view.innerHTML = data.html;
    fresh.innerHTML = data.badge;
    let added = 0;
    for (const li of view.querySelectorAll("[data-event-id]")) {
      if (before.size && !before.has(li.dataset.eventId)) {
        li.classList.add("new");
        added += 1;
      }
    }
    view.dataset.updates = String(Number(view.dataset.updates || 0) + 1);
    if (added) announce.textContent = `${added} new touchpoint${added === 1 ? "" : "s"}`;
    setState(true, "Live");
  });
  source.addEventListener("freshness", (event) => {
    fresh.innerHTML = JSON.parse(event.data).badge;
  });
  source.addEventListener("gone", () => {
    source.close();
    setState(false, "This customer's data was erased");
  });
})();
