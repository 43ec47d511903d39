"""Replay with stage 1 in a child process (``--jobs 2``) decides exactly what one process (``--jobs 1``) does, and
fails, or stops on Ctrl-C, with the same clear message and exit status, leaving no process behind."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gatekeeper.planfile import load_plan
from gatekeeper.shell.cli import main
from gatekeeper.shell.replay import replay
from gatekeeper.shell.side_files import SideFile
from gatekeeper.sim.scenario import load_scenario
from gatekeeper.sim.side_inputs import side_lines
from gatekeeper.sim.writer import simulate

REPO = Path(__file__).resolve().parents[2]
GATEKEEPER = str(Path(sys.executable).with_name("gatekeeper"))


def _run(scenario: str, telemetry: bytes, jobs: int, flush: bool) -> tuple[bytes, bytes, bytes, str]:
    spec = load_scenario(REPO / "config" / "scenarios" / f"{scenario}.yaml")
    side = [SideFile(kind, kind, io.BytesIO(b"\n".join(lines))) for kind, lines in side_lines(spec).items()]
    out, breaches, rejects = io.BytesIO(), io.BytesIO(), io.BytesIO()
    summary = replay(load_plan(REPO / spec.plan), io.BytesIO(telemetry), out, rejects=rejects, breaches=breaches,
                     side=side, jobs=jobs, flush=flush, block_bytes=len(telemetry) // 11 + 1)  # fmt: skip
    return out.getvalue(), breaches.getvalue(), rejects.getvalue(), summary.render()


@pytest.mark.parametrize(
    ("scenario", "flush"),
    [("expansion", False), ("seed-gates", False), ("latency-breach-one-region", False), ("error-breach", True)],
)
def test_stage_1_in_a_child_gives_byte_identical_output(scenario: str, flush: bool) -> None:
    """A golden scenario's telemetry (with a blank line and invalid records mixed in), its side files, read in
    eleven blocks: decisions, breach events, rejects and the summary are byte-identical with 1 and 2 jobs."""
    spec = load_scenario(REPO / "config" / "scenarios" / f"{scenario}.yaml")
    lines = [line for chunk in simulate(spec) for line in chunk]
    lines[500:500] = [b"", b"{not json", b'{"ts": 1, "region": "us-east"}']
    telemetry = b"\n".join(lines) + b"\n"
    one = _run(scenario, telemetry, 1, flush)
    assert one[0]  # decisions made, so their bytes are compared
    assert one[2]  # rejections too
    assert one == _run(scenario, telemetry, 2, flush)


def _cli(args: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(args)
    return code, err.getvalue()


def test_a_truncated_input_gives_the_same_message_with_either_jobs(tmp_path: Path) -> None:
    """A protobuf input cut inside a frame: exit status 2 and the same one-line message, no traceback, with 1
    and with 2 jobs (the error is raised in the stage-1 process with 2)."""
    path = tmp_path / "cut.bin"
    path.write_bytes((100).to_bytes(4, "big") + b"\x0a" * 10)
    results = [_cli(["replay", "--quiet", "--jobs", str(j), "--format", "otlp-proto", "--input", str(path),
                     "--output", os.devnull]) for j in (1, 2)]  # fmt: skip
    expected = (2, "gatekeeper: error: the input ends inside protobuf batch 1 (14 bytes left): is it truncated?\n")
    assert [expected, expected] == results


def test_a_read_error_gives_the_same_message_with_either_jobs() -> None:
    """An input whose reads fail (``/proc/self/mem`` at offset 0: EIO): exit status 2 and the same message naming
    the I/O error, with 1 and 2 jobs."""
    results = [_cli(["replay", "--quiet", "--jobs", str(j), "--format", "json", "--input", "/proc/self/mem",
                     "--output", os.devnull]) for j in (1, 2)]  # fmt: skip
    expected = (2, "gatekeeper: error: cannot read the input: Input/output error\n")
    assert [expected, expected] == results


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def _reading_a_pipe(pid: int) -> bool:
    """Blocked reading a pipe (its input, or the stage-1 process's output, which a thread receives while the main
    thread waits for its queue): start-up is over."""
    chans = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/wchan") as f:
            chans.append(f.read())
    return any("pipe" in c for c in chans) and all("pipe" in c or "futex" in c for c in chans)


def _started(jobs: int) -> subprocess.Popen[bytes]:
    """``gatekeeper replay`` reading a pipe that stays open, in its own process group (as a terminal's job)."""
    plan = str(REPO / "config" / "rollout-plan.yaml")
    proc = subprocess.Popen(
        [GATEKEEPER, "replay", "--quiet", "--jobs", str(jobs), "--format", "json", "--plan", plan, "--input", "-",
         "--output", os.devnull],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(b'{"ts": 1767225600, "region": "us-east", "tier": "canary", "latency_ms": 5, "status": 200}\n')
    proc.stdin.flush()
    deadline = time.monotonic() + 120
    while not all(map(_reading_a_pipe, [proc.pid, *_children(proc.pid)])) or len(_children(proc.pid)) != jobs - 1:
        assert time.monotonic() < deadline, "replay did not start reading"
        time.sleep(0.05)
    return proc


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_stops_replay_with_its_message_and_no_process_left(jobs: int) -> None:
    """SIGINT to the whole process group (Ctrl-C) while replay waits for input: exit status 130, the one-line
    "interrupted" message and nothing else on stderr, and no process of the group left (no stage-1 child)."""
    proc = _started(jobs)
    os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert (130, b"gatekeeper: interrupted\n", True) == (proc.returncode, err, _group_gone(proc.pid))


def test_a_killed_stage_1_process_is_a_clear_error() -> None:
    """The stage-1 process killed (SIGKILL) mid-input: replay exits with status 2 and a message naming it, no
    traceback, no hang."""
    proc = _started(2)
    (child,) = _children(proc.pid)
    os.kill(child, signal.SIGKILL)
    _out, err = proc.communicate(timeout=60)
    expected = (
        2,
        b"gatekeeper: error: replay's stage-1 process stopped unexpectedly (exit status -9); retry, or run with "
        b"--jobs 1\n",
    )
    assert expected == (proc.returncode, err)
