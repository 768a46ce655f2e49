"""The security headers every answer of the query service carries: the guard
(``guard.py``) adds them to what the routes answer, and the error handler of last resort
(``errors.py``), which Starlette runs outside the guard, to its own answers."""

from __future__ import annotations

__all__ = ["CSP", "security_headers"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
    "frame-ancestors 'none'"
)


def security_headers(*, no_store: bool) -> dict[str, str]:
    """A Content-Security-Policy that runs only this origin's script files, no framing, no
    sniffing, no Referer; ``no_store`` on what a key was needed for."""
    headers = {
        "content-security-policy": CSP,
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
    }
    if no_store:
        headers["cache-control"] = "no-store"
    return headers
