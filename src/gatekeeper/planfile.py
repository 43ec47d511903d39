"""Loading a plan file, with errors a person can act on: the file, the field, what is wrong, the valid options.
Used by the shell's commands and by the simulator's scenarios alike."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from gatekeeper.core.plan import Plan
from gatekeeper.errors import UserError
from gatekeeper.validation import format_validation

# libyaml's parser when PyYAML was built with it (its wheels are): ~10x faster than the pure-Python one, and a plan
# is read at the start of every command, before replay's stage-1 process can start; the same documents either way.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file; raises UserError with every problem listed."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read the plan {source}: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=_LOADER)  # _LOADER is a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise UserError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise UserError(f"{source}: a plan is a YAML mapping with plan, version, regions and phases")
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        raise UserError(format_validation(source, Plan, exc)) from None
