// The console's few scripts: keyboard search, the agent's time zone, and the live customer
// view (the server pushes the re-rendered view over SSE; no reloads).
(() => {
  "use strict";

  // ---- keyboard: "/" focuses the search box; arrows move through the results.
  const search = document.getElementById("q");
  const typing = (el) => el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  const results = () => [...document.querySelectorAll("#hits > li > a")];
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    const active = document.activeElement;
    if (event.key === "/" && !typing(active) && search) {
      event.preventDefault();
      search.focus();
      search.select();
      return;
    }
    const links = results();
    if (!links.length || !["ArrowDown", "ArrowUp", "Escape"].includes(event.key)) return;
    const at = links.indexOf(active);
    if (event.key === "Escape" && at >= 0) {
      search.focus();
    } else if (event.key === "ArrowDown" && (active === search || at >= 0)) {
      links[Math.min(at + 1, links.length - 1)].focus();
    } else if (event.key === "ArrowUp" && at >= 0) {
      if (at === 0) search.focus();
      else links[at - 1].focus();
    } else {
      return;
    }
    event.preventDefault();
  });

  // ---- time zone: offer this computer's zone when it differs from the one shown.
  const zoneInput = document.getElementById("tz");
  const useBrowser = document.getElementById("use-browser-zone");
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (zoneInput && useBrowser && browserZone && browserZone !== zoneInput.dataset.zone) {
    useBrowser.hidden = false;
    useBrowser.textContent = `Use this computer's zone (${browserZone})`;
    useBrowser.addEventListener("click", () => {
      zoneInput.value = browserZone;
      document.getElementById("zone-form").submit();
    });
  }

  // ---- sign out: ends the session on the server (the cookie is HttpOnly: only it can).
  const signOut = document.getElementById("sign-out");
  if (signOut) {
    signOut.addEventListener("click", async () => {
      await fetch("/console/sign-out", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: "{}",
        credentials: "same-origin",
      }).catch(() => undefined);
      location.replace("/console/sign-in");
    });
  }

  // ---- the live customer view
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
    // Keep what the agent unfolded ("show all") unfolded across updates.
    const open = new Set([...view.querySelectorAll("details[open]")].map((d) => d.closest("[data-event-id]")?.dataset.eventId).filter(Boolean));
    view.innerHTML = data.html;
    for (const id of open) view.querySelector(`[data-event-id="${CSS.escape(id)}"] details`)?.setAttribute("open", "");
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
  // ---- possible matches: an agent confirms one (a verified IdentityLinked, JSON POST; the
  // session's key names the agent);
  // the live view then shows the merge. Delegated: the view fragment is re-rendered live.
  document.addEventListener("click", async (event) => {
    const button = event.target instanceof Element ? event.target.closest("[data-confirm-match]") : null;
    if (!button) return;
    const section = button.closest("section") || document;
    const status = section.querySelector("[data-match-status]");
    button.disabled = true;
    const customer = button.dataset.customer;
    const response = await fetch(`/customers/${encodeURIComponent(customer)}/identities`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ kind: "customer_id", value: button.dataset.other }),
    });
    if (status) {
      status.textContent = response.ok
        ? "Confirmed: the view merges as soon as it is folded."
        : `Not confirmed (${response.status}).`;
    }
    if (!response.ok) button.disabled = false;
  });
})();
