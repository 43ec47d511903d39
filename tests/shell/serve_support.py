"""Shared by the serve tests: the rollout plan, golden decisions, and the HTTP app around a board (no broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp.test_utils import TestClient, TestServer

from gatekeeper.core.board import Board
from gatekeeper.core.decision import Decision, decode
from gatekeeper.core.plan import Plan
from gatekeeper.shell.serve.http import ServeState, build_app
from gatekeeper.shell.serve.page import page_data_for
from gatekeeper.shell.serve.promserve import ServeMetrics

REPO = Path(__file__).resolve().parents[2]
PLAN_FILE = REPO / "config" / "rollout-plan.yaml"
GOLDEN = REPO / "tests" / "golden"
T = TypeVar("T")


def rollout_plan() -> Plan:
    return Plan.model_validate(yaml.safe_load(PLAN_FILE.read_text()))


def golden(name: str) -> list[Decision]:
    return [decode(line) for line in (GOLDEN / f"{name}.decisions.jsonl").read_bytes().splitlines() if line]


def board_with(*names: str, upto: dict[str, int] | None = None) -> Board:
    """The rollout plan's board after the golden decisions of ``names`` (the first ``upto[name]`` of each)."""
    board = Board.of(rollout_plan())
    for name in names:
        decisions = golden(name)
        board.apply_all(decisions[: (upto or {}).get(name, len(decisions))])
    return board


def state_for(board: Board, token: str | None = None, *, caught_up: bool = True) -> ServeState:
    metrics = ServeMetrics()
    metrics.watch(board, lambda: caught_up)
    return ServeState(
        board=board,
        metrics=metrics,
        is_caught_up=lambda: caught_up,
        is_connected=lambda: True,
        token=token,
        page_data=page_data_for(rollout_plan(), str(PLAN_FILE)),
    )


def with_client(state: ServeState, body: Callable[[TestClient[Any, Any]], Awaitable[T]]) -> T:
    """Run ``body`` against the app on a real local socket."""

    async def run() -> T:
        async with TestClient(TestServer(build_app(state))) as client:
            return await body(client)

    return asyncio.run(run())
