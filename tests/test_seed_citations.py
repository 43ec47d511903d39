"""Every citation of the seed in the plan resolves inside the repository: the cited file exists, each cited line
exists, and a quoted phrase stands on the line it cites."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "config" / "rollout-plan.yaml"
SEED = ROOT / "docs" / "seed" / "rollout-timeline.md"
LINE = re.compile(r"\bL(\d+)(?:-(\d+))?")
QUOTED = re.compile(r'\bL(\d+) "([^"]+)"')


def seed_lines() -> list[str]:
    return SEED.read_text(encoding="utf-8").splitlines()


def test_plan_source_is_the_seed_in_the_repo() -> None:
    """The plan's `source` names the seed's copy in docs/seed/, which a clone has."""
    source = yaml.safe_load(PLAN.read_text())["source"]
    assert ("docs/seed/rollout-timeline.md", True) == (source, (ROOT / source).is_file())


def test_every_cited_line_exists() -> None:
    """Each `Ln` or `Ln-m` in the plan points at a line the seed has."""
    count = len(seed_lines())
    cited = [(int(a), int(b or a)) for a, b in LINE.findall(PLAN.read_text())]
    assert len(cited) > 50
    assert [] == [(a, b) for a, b in cited if not 1 <= a <= b <= count]


def test_quoted_phrases_stand_on_their_cited_lines() -> None:
    """`Ln "phrase"`: the phrase (up to Markdown emphasis, arrows and quotes) is on line n of the seed."""
    lines = seed_lines()

    def plain(text: str) -> str:
        return " ".join(re.sub(r"[*`\"'→>-]", " ", text).split()).lower()

    quotes = QUOTED.findall(PLAN.read_text())
    assert len(quotes) > 20
    assert [] == [(n, q) for n, q in quotes if plain(q) not in plain(lines[int(n) - 1])]
