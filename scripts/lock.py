"""Refresh the dependency locks (`make lock`) and say what moved.

Writes, with a hash for every file of every pinned version (pip's --require-hashes mode installs them):
  requirements.lock      runtime dependencies of pyproject.toml, plus what builds the package itself
  requirements-dev.lock  the same plus the `dev` extra (tests, linters, benchmarks)
The lock is universal (any platform) for Python >= 3.11. The resolver is uv, itself pinned by hash in
requirements/tools.lock and installed into .venv-lock on first use; installing from the lock needs only pip.

    python3 scripts/lock.py            # re-resolve within pyproject's ranges, keep current pins where allowed
    python3 scripts/lock.py --upgrade  # take the newest versions the ranges allow
    python3 scripts/lock.py --upgrade-package msgspec   # move one package only
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL_ENV = ROOT / ".venv-lock"
TOOLS_LOCK = ROOT / "requirements" / "tools.lock"
BUILD_IN = ROOT / "requirements" / "build.in"
LOCKS = {  # lock file -> extras of pyproject.toml it includes
    ROOT / "requirements.lock": [],
    ROOT / "requirements-dev.lock": ["dev"],
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)")


def pins(path: Path) -> dict[str, str]:
    """name -> version of every pin in a lock (empty when the file does not exist yet)."""
    if not path.exists():
        return {}
    found = (PIN.match(line) for line in path.read_text().splitlines())
    return {m.group(1).lower(): m.group(2) for m in found if m}


def moved(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """One line per package added, removed or moved between two locks, sorted by name."""
    lines = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            lines.append(f"  + {name} {new}")
        elif new is None:
            lines.append(f"  - {name} {old}")
        else:
            lines.append(f"  ~ {name} {old} -> {new}")
    return lines


def uv() -> Path:
    """The pinned uv, installed from its own hash lock on first use."""
    exe = TOOL_ENV / "bin" / "uv"
    if not exe.exists():
        venv.create(TOOL_ENV, with_pip=True)
        pip = TOOL_ENV / "bin" / "pip"
        subprocess.run([pip, "install", "-q", "--require-hashes", "-r", TOOLS_LOCK], check=True)
    return exe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upgrade", action="store_true", help="take the newest versions pyproject allows")
    parser.add_argument("--upgrade-package", action="append", default=[], metavar="NAME", help="move one package")
    args = parser.parse_args()
    for lock, extras in LOCKS.items():
        before = pins(lock)
        command = [
            str(uv()), "pip", "compile", "--quiet", "--universal", "--python-version", "3.11",
            "--generate-hashes", "--custom-compile-command", "make lock",
            "pyproject.toml", str(BUILD_IN.relative_to(ROOT)), "-o", str(lock.relative_to(ROOT)),
        ]  # fmt: skip
        command += [f"--extra={extra}" for extra in extras]
        command += ["--upgrade"] if args.upgrade else []
        command += [f"--upgrade-package={name}" for name in args.upgrade_package]
        subprocess.run(command, check=True, cwd=ROOT)
        changes = moved(before, pins(lock))
        print(f"{lock.name}: {len(changes)} change(s)" + ("" if changes else ", nothing moved"))
        for line in changes:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
