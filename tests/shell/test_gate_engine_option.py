"""``--gate-engine``: which engine runs ``--role gate`` (shell/faust_gate/ for ``faust``), resolved like every
worker flag; ``faust`` only with ``--role gate``."""

from __future__ import annotations

import argparse

import pytest

from gatekeeper.errors import UserError
from gatekeeper.shell.worker.cli import configure, worker_options


def _engine(*argv: str, environ: dict[str, str] | None = None) -> str:
    parser = argparse.ArgumentParser()
    configure(parser)
    return worker_options(parser.parse_args(list(argv)), environ or {}).gate_engine


def test_gate_engine_from_flag_or_environment() -> None:
    """aiokafka by default; ``GATEKEEPER_GATE_ENGINE`` or the flag (which wins) picks faust for ``--role gate``."""
    assert ("aiokafka", "faust", "aiokafka") == (
        _engine(),
        _engine("--role", "gate", environ={"GATEKEEPER_GATE_ENGINE": "faust"}),
        _engine("--role", "gate", "--gate-engine", "aiokafka", environ={"GATEKEEPER_GATE_ENGINE": "faust"}),
    )


def test_faust_engine_needs_the_gate_role() -> None:
    """The Faust engine runs stage 2 only: with the default ``--role both`` it is a clear error naming the fix."""
    with pytest.raises(UserError, match="use it with --role gate"):
        _engine("--gate-engine", "faust")
