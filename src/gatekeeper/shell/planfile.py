"""Loading a plan file, with errors a person can act on: the file, the field, what is wrong, the valid options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from gatekeeper.core.plan import Plan
from gatekeeper.core.timefmt import format_duration


class UserError(Exception):
    """An error caused by input or configuration: printed as one clear message, never as a traceback."""


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def _tag_of(model: type[BaseModel]) -> str | None:
    kind = model.model_fields.get("kind")
    args = getattr(kind.annotation, "__args__", ()) if kind is not None else ()
    return str(args[0]) if args else None


def _walk(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, list[type[BaseModel]]]:
    """A readable path for ``loc`` (without union tags) and the models that can stand at it."""
    path = ""
    candidates: list[type[BaseModel]] = [model]
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        tagged = [m for m in candidates if _tag_of(m) == part]
        if tagged:  # a discriminated union member, named by its tag: not a field
            candidates = tagged
            continue
        path += f".{part}" if path else str(part)
        owner = next((m for m in candidates if part in m.model_fields), None)
        candidates = _models_in(owner.model_fields[part].annotation) if owner else []
    return path or "(top level)", candidates


def validation_problems(model: type[BaseModel], exc: ValidationError) -> list[tuple[str, str]]:
    """(field path, message) per problem of a file validated as ``model``: unknown fields list the valid ones;
    "no items left" echoes of invalid items are dropped."""
    errors = exc.errors()
    problems: list[tuple[str, str]] = []
    for err in errors:
        loc = err["loc"]
        nested = any(len(o["loc"]) > len(loc) and o["loc"][: len(loc)] == loc for o in errors)
        if err["type"] == "too_short" and nested:
            continue  # "no items left" only because the items themselves are invalid
        path, _ = _walk(model, loc)
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "extra_forbidden":
            _, parents = _walk(model, loc[:-1])
            fields = ", ".join(parents[0].model_fields) if len(parents) == 1 else "see the reference"
            message = f"unknown field (valid fields here: {fields})"
        problems.append((path, message))
    return problems


def format_validation(source: str, model: type[BaseModel], exc: ValidationError) -> str:
    problems = validation_problems(model, exc)
    lines = [f"  - {path}: {message}" for path, message in problems]
    return "\n".join([f"{source}: {len(problems)} problem(s):", *lines])


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file; raises UserError with every problem listed."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read the plan {source}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
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


def summarize(plan: Plan) -> str:
    """A readable summary of what the plan gates."""
    ev = plan.evaluation
    out = [
        f"plan {plan.plan} version {plan.plan_version}" + (f" (from {plan.source})" if plan.source else ""),
        f"regions: {', '.join(plan.regions)}",
        f"evaluation: pane {format_duration(ev.pane)}, window {format_duration(ev.window)}, "
        f"lateness {format_duration(ev.lateness)}, stall after {format_duration(ev.stall_after)}; "
        f"false fail <= {ev.confidence.false_fail:g}, false pass <= {ev.confidence.false_pass:g} "
        f"per {ev.confidence.scope} ({ev.method} method; {ev.confidence.interval} pass bounds)",
    ]
    for phase in plan.phases:
        out.append(f"phase {phase.name}: hold {format_duration(phase.hold_on_fail)} on fail")
        for tier in phase.tiers:
            regions = ", ".join(tier.regions or plan.regions)
            soak = format_duration(tier.soak)
            out.append(f"  tier {tier.name}: {tier.traffic_percent:g}% traffic, soak {soak}, regions {regions}")
            for cp in tier.checkpoints:
                out.append(f"    checkpoint {cp.name!r} after {format_duration(cp.after)}")
            for c in tier.criteria:
                if c.kind == "error_rate":
                    text = f"error rate: pass < {c.pass_below:.4%}, fail > {c.fail_above:.4%}"
                    text += f" (min {c.min_requests} requests)"
                elif c.kind == "latency":
                    text = f"{c.name}: pass < {c.pass_below_ms:g} ms, fail > {c.fail_above_ms:g} ms"
                    text += f" (min {c.min_requests} requests)"
                else:
                    text = f"uptime >= {c.at_least:.4%}"
                out.append(f"    {text}")
    out.append(f"{len(plan.gates())} gates (region x tier)")
    return "\n".join(out)
