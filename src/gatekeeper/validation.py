"""Pydantic validation errors as a person reads them: the field path, what is wrong, the valid options. Shared by
the plan and scenario loaders."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError


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
