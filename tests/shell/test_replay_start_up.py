"""What ``gatekeeper replay --jobs 2`` has loaded when it forks its stage-1 process: everything loaded by then is
on the path of the child's first block, so the other subcommands' modules, the progress bar's rich, protobuf and
stage 2's modules load only where they are used (after the fork, or never)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# records sys.modules at replay's fork (the child exits at once), then runs the command as the CLI does
_AT_FORK = """
import os, sys
loaded = []
real_fork = os.fork
def fork():
    loaded.extend(sys.modules)
    return real_fork()
os.fork = fork
from gatekeeper.shell.cli import main
code = main(sys.argv[1:])
print(" ".join(sorted(loaded)))
sys.exit(code)
"""

_RECORD = b'{"ts":1760832000.5,"region":"us-east","tier":"canary","latency_ms":12.5,"status":200,"request_id":"r-1"}\n'


def _loaded_at_fork(tmp_path: Path, *extra: str) -> set[str]:
    source = tmp_path / "telemetry.jsonl"
    source.write_bytes(_RECORD * 3)
    args = ["replay", "--quiet", "--jobs", "2", "--plan", str(REPO / "config" / "rollout-plan.yaml"),
            "--input", str(source), "--output", str(tmp_path / "decisions.jsonl"), *extra]  # fmt: skip
    done = subprocess.run([sys.executable, "-c", _AT_FORK, *args], capture_output=True, check=True, cwd=tmp_path)
    return set(done.stdout.decode().split())


def test_replay_forks_before_other_commands_rich_protobuf_and_stage_2_load(tmp_path: Path) -> None:
    """None of the worker's, tail's, serve's or report's modules, rich, protobuf, the OTLP decoder, stage 2's
    gates and pipeline or the side inputs' modules (read by stage 2) is loaded when replay forks its stage-1
    process; stage 1's decoder and fold are."""
    loaded = _loaded_at_fork(tmp_path)
    unwanted = {
        "gatekeeper.shell.worker.cli", "gatekeeper.shell.tail", "gatekeeper.shell.serve.cli",
        "gatekeeper.shell.report.cli", "asyncio", "rich", "google.protobuf", "gatekeeper.core.otlp",
        "gatekeeper.core.gate", "gatekeeper.core.pipeline", "gatekeeper.core.burn_rate",
        "gatekeeper.core.side_inputs", "gatekeeper.core.side_records", "gatekeeper.core.lift",
        "gatekeeper.core.incidents", "gatekeeper.core.approvals",
    }  # fmt: skip
    assert set() == unwanted & loaded
    assert {"gatekeeper.core.source_fold", "gatekeeper.core.telemetry"} <= loaded


def _help(command: str | None, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    from gatekeeper.shell.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser(command).parse_args(argv)
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["worker", "tail", "report", "serve", "replay"])
def test_the_named_command_is_configured_as_with_every_command(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``build_parser(command)`` leaves the other delegated subcommands unconfigured, not ``command`` itself: its
    ``--help`` is the one ``build_parser()`` (every subcommand configured) gives."""
    expected = _help(None, [command, "--help"], capsys)
    assert expected == _help(command, [command, "--help"], capsys)
    assert "--" in expected  # the command's own options are listed


def test_the_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``gatekeeper --help`` (no command named) lists the same commands as with every subcommand configured."""
    expected = _help(None, ["--help"], capsys)
    assert expected == _help("--help", ["--help"], capsys)
