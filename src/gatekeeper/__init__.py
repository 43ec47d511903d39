"""gatekeeper: an event-driven SLO gate evaluator for staged rollouts."""

__version__ = "0.1.0"
