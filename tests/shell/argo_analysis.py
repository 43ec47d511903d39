"""Argo Rollouts' analysis of one ``web`` measurement, re-stated for tests: the AnalysisTemplate's own
condition strings evaluated on the served JSON, with the phase rules of argo-rollouts' utils/evaluate
(EvaluateResult) and the web provider's (a non-2xx answer is an Error; the body at ``jsonPath`` is ``result``).

The conditions are expr-lang expressions; this evaluates the subset the examples use (``result.field``,
string and number literals, ``== != < <= > >=``, ``&& || !``, parentheses) and refuses anything else.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

_TOKENS = re.compile(
    r"\s*(?:(\|\||&&|==|!=|<=|>=|[<>!()])"  # operators
    r'|("(?:[^"\\]|\\.)*")'  # string literal
    r"|([A-Za-z_][A-Za-z0-9_.]*)"  # names and member access
    r"|(\d+(?:\.\d+)?))"  # numbers
)


def _to_python(condition: str) -> str:
    out, pos = [], 0
    text = condition.strip()
    while pos < len(text):
        match = _TOKENS.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"condition {condition!r}: cannot read at {text[pos:]!r}")
        op, string, name, number = match.groups()
        pos = match.end()
        if op is not None:
            out.append({"||": " or ", "&&": " and ", "!": " not "}.get(op, op))
        elif string is not None:
            out.append(json.dumps(json.loads(string)))
        elif name is not None:
            out.append({"true": "True", "false": "False", "nil": "None"}.get(name, name))
        else:
            out.append(number)
    return "".join(out).strip()


def _value(node: ast.expr, result: Any) -> Any:  # noqa: PLR0911 - one return per node kind
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id != "result":
            raise ValueError(f"unknown name {node.id!r}")
        return result
    if isinstance(node, ast.Attribute):
        owner = _value(node.value, result)
        if not isinstance(owner, dict) or node.attr not in owner:
            return None  # expr-lang reads a missing map key as nil
        return owner[node.attr]
    if isinstance(node, ast.BoolOp):
        values = [_truth(v, result) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _truth(node.operand, result)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        left, right = _value(node.left, result), _value(node.comparators[0], result)
        return _compare(node.ops[0], left, right)
    raise ValueError(f"unsupported expression {ast.dump(node)}")


def _compare(op: ast.cmpop, left: Any, right: Any) -> bool:
    if isinstance(op, ast.Eq):
        return bool(left == right)
    if isinstance(op, ast.NotEq):
        return bool(left != right)
    if not isinstance(left, int | float) or not isinstance(right, int | float):
        raise ValueError(f"cannot order {left!r} and {right!r}")
    orders = {ast.Lt: left < right, ast.LtE: left <= right, ast.Gt: left > right, ast.GtE: left >= right}
    return orders[type(op)]


def _truth(node: ast.expr, result: Any) -> bool:
    value = _value(node, result)
    if not isinstance(value, bool):
        raise ValueError(f"expected a bool, got {value!r}")  # expr.AsBool(): a non-bool is an evaluation error
    return value


def evaluate(condition: str, result: Any) -> bool:
    """The condition's value on ``result``; ValueError where Argo's evaluation would error."""
    tree = ast.parse(_to_python(condition), mode="eval")
    return _truth(tree.body, result)


def measurement_phase(status: int, body: bytes, success: str, failure: str) -> str:
    """Successful / Failed / Inconclusive / Error of one web measurement with both conditions set."""
    if not 200 <= status < 300:
        return "Error"
    try:
        result = json.loads(body)
        failed, passed = evaluate(failure, result), evaluate(success, result)
    except ValueError:
        return "Error"
    if failed:
        return "Failed"
    return "Successful" if passed else "Inconclusive"
