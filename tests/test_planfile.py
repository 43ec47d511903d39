"""Loading a plan file: the parser PyYAML was built with (libyaml when present) reads the same plan as the
pure-Python one, and a file that is not valid YAML is one message naming the file, the line and column, and why."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gatekeeper.core.plan import Plan
from gatekeeper.errors import UserError
from gatekeeper.planfile import load_plan

REPO = Path(__file__).resolve().parents[1]


def test_the_shipped_plan_loads_as_the_pure_python_parser_reads_it() -> None:
    """config/rollout-plan.yaml gives the same validated plan through ``load_plan`` as through PyYAML's
    pure-Python safe loader."""
    path = REPO / "config" / "rollout-plan.yaml"
    expected = Plan.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))  # SafeLoader: pure Python
    assert expected == load_plan(path)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("plan: [a, b\nversion: 3\n", "line 2, column 8"),
        ("plan: a: b\n", "line 1, column 8"),
        ("plan: 'unterminated\n", "line 2, column 1"),
    ],
)
def test_a_plan_that_is_not_yaml_is_one_message_with_its_position(tmp_path: Path, text: str, where: str) -> None:
    """Broken YAML is a ``UserError`` naming the file and the position, not a parser traceback."""
    path = tmp_path / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as info:
        load_plan(path)
    message = str(info.value)
    assert (True, True) == (message.startswith(f"{path}: not valid YAML at "), where in message)
