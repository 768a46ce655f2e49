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
