"""A closed-loop rollout: a controller moves each region through the plan's tiers by reacting to the gate's
decisions, while simulated telemetry flows through the real decoder and engine, hour by hour of event time.

Each region starts at the first tier. On ``pass`` the controller moves that region's traffic to the next tier;
on ``hold`` it rolls the tier back (its telemetry stops); on ``release`` it retries the tier. Problems are
injected per (region, tier) on chosen attempts, so the story is reproducible for a seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gatekeeper.core import global_gate
from gatekeeper.core.decision import Decision
from gatekeeper.core.pipeline import Pipeline
from gatekeeper.core.plan import LatencyCriterion, NoRegressionCriterion, Plan
from gatekeeper.core.timefmt import parse_instant
from gatekeeper.sim.scenario import Episode, Latency, Stream
from gatekeeper.sim.side_story import InjectedIncident, Revenue, SideStory
from gatekeeper.sim.traffic import encode_jsonl, generate

HOUR_MS = 3_600_000
_FOREVER_MS = 10 * 365 * 86_400_000


@dataclass(frozen=True, slots=True)
class Health:
    """How a tier behaves on one attempt."""

    error_rate: float = 0.0004
    median_ms: float = 15.0
    sigma: float = 0.35


@dataclass(frozen=True, slots=True)
class Story:
    """The demo's script: traffic level and the problems injected on given attempts (1-based)."""

    start: str = "2025-10-19T00:00:00Z"
    rate_per_min: float = 20.0  # sampled telemetry per region
    problems: dict[tuple[str, str, int], Health] = field(
        default_factory=lambda: {
            ("eu-west", "ramp-25", 1): Health(median_ms=60.0),  # latency regression: P99 ~135 ms > 100 ms
            ("us-west", "rollout-90", 1): Health(error_rate=0.006),  # error spike: 0.6 % > 0.1 %
            # the expansion (seed phase 6): eu-west errs on its first attempt, so the all-regions gate
            # (global/expansion) holds, then waits for eu-west after the others passed
            ("eu-west", "expansion", 1): Health(error_rate=0.006),
        }
    )
    incidents: tuple[InjectedIncident, ...] = (  # a critical outage on day 5 of us-east's canary, 2 h long
        InjectedIncident("us-east", "canary", 5 * 24 * HOUR_MS, 2 * HOUR_MS),
    )
    revenue: Revenue = field(default_factory=Revenue)


@dataclass(slots=True)
class RegionProgress:
    region: str
    tiers: list[str]
    index: int = 0
    attempt: int = 1
    state: str = "running"  # running | held | done
    since_ms: int = 0
    sent_until: int = 0  # telemetry was generated up to here
    first_since_ms: int = 0  # when the current tier's first attempt began (injected incidents count from it)
    history: list[str] = field(default_factory=list)

    @property
    def tier(self) -> str:
        return self.tiers[min(self.index, len(self.tiers) - 1)]


@dataclass(frozen=True, slots=True)
class Tick:
    """One simulated hour: its end, the decisions it produced, and the regions' progress."""

    end_ms: int
    events: int
    decisions: list[Decision]
    regions: list[RegionProgress]


class Rollout:
    def __init__(self, plan: Plan, story: Story, seed: int) -> None:
        self.plan, self.story = plan, story
        self.engine = Pipeline(plan)
        self.decoder = self.engine.decoder()
        self.rng = np.random.default_rng(seed)
        self.start_ms = parse_instant(story.start)
        tiers = [t.name for p in plan.phases for t in p.tiers]
        self.regions = [
            RegionProgress(
                r, [t for t in tiers if self._gated(r, t)], since_ms=self.start_ms, first_since_ms=self.start_ms
            )
            for r in plan.regions
        ]
        self.events = 0
        self.global_history: list[str] = []  # the all-regions gates' decisions (core/global_gate.py)
        self.side = SideStory(plan, self.engine, np.random.default_rng([seed, 1]), story.revenue, story.incidents)

    def _gated(self, region: str, tier: str) -> bool:
        return any(r == region and t.name == tier for r, _p, t in self.plan.gates())

    def _baselines(self, tier: str) -> list[str]:
        """The baseline versions the tier's no_regression criteria compare it with (their telemetry is sent too)."""
        criteria = [c for p in self.plan.phases for t in p.tiers if t.name == tier for c in t.criteria]
        return sorted({c.baseline_version for c in criteria if isinstance(c, NoRegressionCriterion)})

    def _away(self, region: str, tier: str) -> str | None:
        """Another region of the plan whose clients send a tenth of a cross-region-gated tier's requests."""
        spec = next(t for _r, _p, t in self.engine.plan.gates() if t.name == tier)
        if not any(isinstance(c, LatencyCriterion) and c.requests == "cross_region" for c in spec.criteria):
            return None
        regions = self.engine.plan.regions
        return regions[(regions.index(region) + 1) % len(regions)] if len(regions) > 1 else None

    def _baseline_stream(self, region: str, version: str) -> Stream:
        """The baseline version's traffic: healthy, as much as the tier's."""
        healthy = Health()
        return Stream(
            region=region, tier="baseline", version=version, end=_FOREVER_MS, rate_per_min=self.story.rate_per_min,
            error_rate=healthy.error_rate, latency=Latency(median_ms=healthy.median_ms, sigma=healthy.sigma),
        )  # fmt: skip

    def _stream(self, progress: RegionProgress) -> Stream:
        health = self.story.problems.get((progress.region, progress.tier, progress.attempt), Health())
        return Stream(
            region=progress.region, tier=progress.tier, begin=0, end=_FOREVER_MS,
            rate_per_min=self.story.rate_per_min, error_rate=health.error_rate,
            latency=Latency(median_ms=health.median_ms, sigma=health.sigma), episodes=tuple[Episode, ...](),
        )  # fmt: skip

    def hours(self, limit_hours: int = 24 * 7 * 30) -> Iterator[Tick]:
        """Run hour by hour until every region is done (or the limit)."""
        for hour in range(limit_hours):
            begin = self.start_ms + hour * HOUR_MS
            lines: list[bytes] = []
            times: list[npt.NDArray[np.int64]] = []
            for progress in self.regions:
                if progress.state == "running" and progress.since_ms < begin + HOUR_MS:
                    lo = max(progress.since_ms, progress.sent_until)  # a retry resumes at hold_until
                    requests = generate(self._stream(progress), self.start_ms, lo, begin + HOUR_MS, self.rng)
                    progress.sent_until = begin + HOUR_MS
                    self.side.hour(progress.region, progress.tier, progress.first_since_ms, begin, begin + HOUR_MS)
                    lines += encode_jsonl(
                        requests,
                        progress.region,
                        progress.tier,
                        "epoch",
                        self.rng,
                        first_id=self.events + len(lines),
                        away=self._away(progress.region, progress.tier),
                    )
                    times.append(requests.ts_ms)
                    for version in self._baselines(progress.tier):  # the baseline beside a no_regression tier
                        stream = self._baseline_stream(progress.region, version)
                        base = generate(stream, self.start_ms, lo, begin + HOUR_MS, self.rng)
                        lines += encode_jsonl(base, progress.region, "baseline", "epoch", self.rng,
                                              first_id=self.events + len(lines), version=version)  # fmt: skip
                        times.append(base.ts_ms)
            if len(times) > 1:
                # The regions' requests interleaved in event time, as one telemetry stream carries them: one
                # region's hour after another's would put most of the later regions' records behind the
                # watermark (an hour out of order against 5 minutes of lateness), counted late.
                order = np.argsort(np.concatenate(times), kind="stable").tolist()
                lines = [lines[i] for i in order]
            self.events += len(lines)
            decisions = self.engine.ingest(self.decoder.decode(lines)) if lines else []
            if not lines:  # nobody sends: the stream clock still moves (holds end on time)
                decisions = self.engine.observe_stream_time(begin + HOUR_MS)
            for d in decisions:
                self._react(d, begin + HOUR_MS)
            yield Tick(begin + HOUR_MS, len(lines), decisions, self.regions)
            if all(p.state == "done" for p in self.regions):
                return

    def _react(self, d: Decision, now_ms: int) -> None:
        if d.region == global_gate.REGION:  # an all-regions gate: it moves no region's traffic
            self.global_history.append(f"{d.tier} {d.decision}")
            return
        self.side.react(d)  # the controller also plays the approver
        progress = next(p for p in self.regions if p.region == d.region)
        if d.tier != progress.tier:
            return
        if d.decision == "pass" and progress.state == "running":
            progress.history.append(f"{d.tier} passed")
            progress.index += 1
            progress.attempt = 1
            progress.since_ms = progress.first_since_ms = now_ms
            if progress.index >= len(progress.tiers):
                progress.state = "done"
        elif d.decision == "hold":
            progress.history.append(f"{d.tier} held")
            progress.state = "held"
        elif d.decision == "release" and progress.state == "held":
            progress.state = "running"
            progress.attempt += 1
            progress.since_ms = parse_instant(d.at)
