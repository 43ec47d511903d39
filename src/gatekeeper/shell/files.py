"""Where the shell's commands read and write: the default plan, input files or stdin, output files or stdout,
with a ``UserError`` naming the path when one cannot be opened."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gatekeeper.errors import UserError

_REPO_ROOT = Path(__file__).resolve().parents[3]


def default_plan() -> str:
    """$GATEKEEPER_PLAN, else config/rollout-plan.yaml here or in the source checkout."""
    if env := os.environ.get("GATEKEEPER_PLAN"):
        return env
    local = Path("config/rollout-plan.yaml")
    return str(local if local.exists() else _REPO_ROOT / "config" / "rollout-plan.yaml")


@contextlib.contextmanager
def open_in(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after the caller is done
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        yield handle


@contextlib.contextmanager
def open_out(path: str | None) -> Iterator[BinaryIO | None]:
    if path is None:
        yield None
        return
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    try:
        handle = open(path, "wb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    with handle:
        yield handle
