"""What analysts read: the log exported as tables (``journey.analytics.export``), and
the views and figures built on it (as-of views, service metrics, reports)."""
