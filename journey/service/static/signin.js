// Sign in with a key: typed into the form, or given in the address's fragment
// (/console/sign-in#key=…, what `make demo` prints). A fragment never reaches the server, its
// logs or a Referer; it is removed from the address bar before anything else happens.
// The key is sent once, as JSON (the only kind of body that changes state here), and the
// server answers with an HttpOnly session cookie: the key itself is not kept by the page.
(() => {
  "use strict";
  const form = document.getElementById("sign-in");
  const input = document.getElementById("key");
  const status = document.getElementById("sign-in-status");
  const next = new URLSearchParams(location.search).get("next") || "/";

  const signIn = async (key) => {
    status.textContent = "Signing in…";
    let response;
    try {
      response = await fetch("/console/sign-in", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ key, next }),
        credentials: "same-origin",
      });
    } catch (error) {
      status.textContent = `The service did not answer: ${error}`;
      return;
    }
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      location.replace(body.next || "/");
      return;
    }
    status.textContent = (body.error && body.error.message) || `Sign-in failed (${response.status})`;
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    signIn(input.value.trim());
  });
  const fromFragment = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromFragment) {
    history.replaceState(null, "", location.pathname + location.search);
    signIn(fromFragment);
  }
})();
