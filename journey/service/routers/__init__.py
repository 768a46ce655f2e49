"""The query service's HTTP routes, one module per area; ``journey.service.app.create_app``
wires them.

* ``customers`` — a customer's view, timeline and cases, by id or any identity; search.
* ``live`` — the customer's view pushed over Server-Sent Events whenever it changes.
* ``service_levels`` — unanswered, due soon, breached; counts by team and channel.
* ``defects`` — known defects and their outreach.
* ``events`` — ``POST /events``: validate touchpoints, produce them to the log.
* ``health`` — ``/healthz`` and ``/metrics``.
* ``audit`` — ``GET /audit``: who read which customer (admin).

Who may call what is declared per route (``deps.require``); the guard in front of them all
(``journey.service.guard``) checks keys, hosts, origins and bodies.

The agent console's HTML routes live in ``journey.service.console``.
"""
