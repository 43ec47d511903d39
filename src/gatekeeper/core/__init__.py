"""The pure, deterministic core: events -> aggregates -> verdicts -> decisions.

Nothing in this package reads a file, a socket or the wall clock; time is always passed in.
"""
