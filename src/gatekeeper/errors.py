"""Errors every layer may raise: kept apart so that core, sim and shell can share them without importing each
other (as structlog's ``exceptions.py``)."""


class UserError(Exception):
    """An error caused by input or configuration: printed as one clear message, never as a traceback."""
