"""Contract tests: one suite, run against every log adapter through the ``log`` fixture."""
