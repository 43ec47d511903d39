"""``gatekeeper serve``: the decisions topic as an HTTP API, Flagger webhooks, Prometheus metrics and a status page."""
