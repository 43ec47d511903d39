"""``gatekeeper replay``'s options checked before any file is opened: a bad value is argparse's usage error
(exit 2, the option and the value named), never a traceback, and an existing output file is left as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatekeeper.shell.cli import main


def test_a_now_that_is_not_rfc_3339_is_a_usage_error_and_touches_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--now 1761000000`` (epoch seconds, not RFC 3339): exit 2 with ``argument --now: not an RFC 3339
    timestamp: '1761000000'``; the decisions file written before keeps its content."""
    (tmp_path / "in.jsonl").write_bytes(b"")
    out = tmp_path / "decisions.jsonl"
    out.write_bytes(b"kept\n")

    with pytest.raises(SystemExit) as exit_info:
        main(["replay", "--input", str(tmp_path / "in.jsonl"), "--output", str(out), "--now", "1761000000"])

    assert 2 == exit_info.value.code
    assert "argument --now: not an RFC 3339 timestamp: '1761000000'" in capsys.readouterr().err
    assert b"kept\n" == out.read_bytes()


def test_an_rfc_3339_now_is_the_clock_of_the_future_timestamp_check(tmp_path: Path) -> None:
    """With ``--now 2025-10-19T00:10:00Z`` a record at 00:05 is replayed; one at 02:00, more than the plan's
    allowed skew (1 h) after that clock, is rejected as a future timestamp (line 2)."""
    lines = [
        b'{"ts": 1760832300, "region": "us-east", "tier": "canary", "latency_ms": 10, "status": 200}',
        b'{"ts": 1760839200, "region": "us-east", "tier": "canary", "latency_ms": 10, "status": 200}',
    ]
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    rejects = tmp_path / "rejects.jsonl"

    code = main(["replay", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "d.jsonl"),
                 "--rejects", str(rejects), "--now", "2025-10-19T00:10:00Z", "--quiet"])  # fmt: skip

    assert 0 == code
    [reject] = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert (2, "invalid_field:ts") == (reject["line"], reject["code"])
    assert "after 2025-10-19T01:10:00Z" in reject["message"]
