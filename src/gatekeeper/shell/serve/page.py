"""The status page's data (``/status.json``): the board, chart series with thresholds, checkpoints, calendar."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gatekeeper.core.board import Board
from gatekeeper.core.controllers import Freshness, board_document
from gatekeeper.core.plan import Plan


def page_data_for(plan: Plan, plan_path: str) -> Callable[[Board, Freshness], dict[str, Any]]:
    def data(board: Board, fresh: Freshness) -> dict[str, Any]:
        return {"board": board_document(board, fresh)}

    return data
