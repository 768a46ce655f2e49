"""Who may do what: API keys and their roles (``keys``), console sessions, and the audit
trail of every read of a customer (``audit``). The query service enforces them
(``journey.service.guard`` and ``journey.service.deps.require``)."""
