"""No log line carries a secret: passwords in URLs, wherever they sit in the event, and
secrets the settings know, also inside a client library's (stdlib logging) message."""

from __future__ import annotations

import logging

import pytest
import structlog

from journey.logs import configure_logging
from journey.settings import Settings

SECRET = "Pa55w0rdInUrl"  # noqa: S105  # a test secret: it must never be printed


def test_structlog_and_library_lines_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(broker=f"kafka://bob:{SECRET}@127.0.0.1:1")
    assert SECRET not in settings.broker and SECRET not in repr(settings)
    assert settings.kafka_password is not None
    assert settings.kafka_password.get_secret_value() == SECRET
    try:
        configure_logging("json", "info")

        structlog.get_logger("t").warning(
            "connect failed",
            url=f"postgresql://u:{SECRET}x@db/views",
            hosts=[f"kafka://bob:{SECRET}@h:1"],
        )
        # kafka-python's own loggers are quiet below debug; another library's are not.
        logging.getLogger("somelib").error("auth failed for password %s", SECRET)
        out = capsys.readouterr()
    finally:
        structlog.reset_defaults()  # configured to print to this test's captured stderr
        root = logging.getLogger()
        for handler in list(root.handlers):  # it writes to this test's captured stderr
            if getattr(handler, "_journey", False):
                root.removeHandler(handler)
        root.setLevel(logging.WARNING)
        logging.getLogger("kafka").setLevel(logging.NOTSET)
    text = out.out + out.err
    assert "connect failed" in text and "auth failed" in text
    assert SECRET not in text
    assert "***" in text


def test_an_api_key_or_session_in_any_text_is_redacted() -> None:
    """Keys are secrets too (issue 8, item 8): a key or console session that lands in an
    error message or a log field (pasted where an id belongs, echoed by a library) is
    blanked like a password."""
    from journey.settings import redact

    key = "jk_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0u-_"
    session = "js_" + "z" * 43
    text = redact(f"no customer {key!r}; cookie journey_session={session}")
    assert key not in text and session not in text
    assert text.count("***") == 2
    assert redact("customer jk_short stays") == "customer jk_short stays"  # not a key
