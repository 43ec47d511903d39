"""A numpy model of the sequential error-rate fail test (the soak's test plus Shiryaev-Roberts restarts, the
formulas of core/sequential.py and core/change_detect.py), vectorised over replicas: fast enough for the 500-2,000
replicas that resolve the restart split, the start grid and false fails over a whole soak
(docs/statistics.md, "The split and the start grid, measured"). Differences from the test: restarts every
``grid`` panes with the in-soak weight throughout (the test gives restarts after the soak less, so the model's
false-fail rate slightly overstates the test's); the bench/verdict_rates.py ``--only tradeoff`` table checks it
on the real Gate.

    python -m bench.restart_model --only frontier
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from gatekeeper.core import change_detect, stats

_LOG_ODDS = np.log(np.asarray(stats.FAIL_ODDS))
_LOG_WEIGHTS = np.log(np.asarray(stats.FAIL_WEIGHTS))


def fail_minutes(
    share: float,
    grid: int,
    onset_min: int,
    breach: float,
    reps: int,
    *,
    alpha: float = 0.009,
    per_min: float = 40,
    ceiling: float = 0.001,
    healthy: float = 0.00079,
    horizon_h: int = 80,
    planned_h: int = 504,
    seed: int = 1,
) -> np.ndarray:
    """Minutes from ``onset_min`` (breach rate ``breach`` from then on) to each replica's fail; NaN if none
    within ``horizon_h`` after the onset. Read after every one-minute pane, as the gate does."""
    rng = np.random.default_rng(seed)
    cost = np.log1p(np.expm1(_LOG_ODDS) * ceiling)
    log_weight = math.log((1 - change_detect.RESTARTS_AFTER_SOAK) * share * grid / (planned_h * 60))
    threshold = -math.log(alpha)
    soak = np.zeros((reps, len(_LOG_ODDS)))
    restarts = np.full((reps, len(_LOG_ODDS)), -np.inf)
    out = np.full(reps, np.nan)
    done = np.zeros(reps, dtype=bool)
    for minute in range(onset_min + horizon_h * 60):
        if minute > 0 and minute % grid == 0:
            restarts = np.logaddexp(restarts, log_weight)
        n = rng.poisson(per_min, reps)
        k = rng.binomial(n, breach if minute >= onset_min else healthy)
        step = k[:, None] * _LOG_ODDS - n[:, None] * cost
        soak += step
        restarts += step
        total = np.logaddexp(
            math.log(1 - share) + np.logaddexp.reduce(soak + _LOG_WEIGHTS, axis=1),
            np.logaddexp.reduce(restarts + _LOG_WEIGHTS, axis=1),
        )
        crossed = (total >= threshold) & ~done
        out[crossed] = minute + 1 - onset_min
        done |= crossed
        if done.all():
            break
    return out


def _cell(minutes: np.ndarray) -> str:
    return f"{np.nanmedian(minutes) / 60:.2f} / {np.nanpercentile(minutes, 90) / 60:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("frontier", "grid", "false_fail"), action="append")
    parser.add_argument("--replicas", type=int, default=1000)
    args = parser.parse_args()
    reps = args.replicas
    if not args.only or "frontier" in args.only:
        print("restart_share | scope | 2x from the start | 2x from day 10 (median / P90 hours)")
        for alpha, scope in ((0.009, "gate"), (0.009 / 27, "rollout")):
            for share in (0.05, 0.1, 0.25, 0.5, 0.75):
                start = fail_minutes(share, 60, 0, 0.002, reps, alpha=alpha)
                mid = fail_minutes(share, 60, 240 * 60, 0.002, reps // 2, alpha=alpha, seed=2)
                print(f"{share} | {scope} | {_cell(start)} | {_cell(mid)}", flush=True)
    if not args.only or "grid" in args.only:
        print("breach | restarts every (min) | median hours after onsets at +0/+17/+30/+45 min")
        for breach in (0.002, 0.004):
            for grid in (1, 15, 60, 240):
                medians = [
                    np.nanmedian(fail_minutes(0.1, grid, 240 * 60 + off, breach, reps // 5, seed=2)) / 60
                    for off in (0, 17, 30, 45)
                ]
                print(f"{breach / 0.001:g}x | {grid} | " + " / ".join(f"{m:.2f}" for m in medians), flush=True)
    if not args.only or "false_fail" in args.only:
        print("alpha | truth | failed over the 3-week soak and a week after")
        hours = 4 * 168
        for alpha in (0.009, 0.2):
            for rate, per_min in ((0.00079, 40), (0.001, 40), (0.001, 5)):
                out = fail_minutes(
                    0.1, 60, hours * 60, 0.0, 2 * reps, alpha=alpha, per_min=per_min, healthy=rate, horizon_h=0, seed=5
                )
                fired = int(np.count_nonzero(~np.isnan(out)))
                print(f"{alpha} | {rate} at {per_min}/min | {fired} of {2 * reps}", flush=True)


if __name__ == "__main__":
    main()
