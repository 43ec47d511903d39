"""Gate state <-> bytes, for changelog-backed tables: compact (sparse sketches, msgpack) and exact."""

from __future__ import annotations

import msgspec

from gatekeeper.core import side_ledger, sketch, slice_ledger
from gatekeeper.core.gate import GateState
from gatekeeper.core.sequential import Restarts

FORMAT = 2


class _Sparse(msgspec.Struct, array_like=True):
    indices: list[int]
    counts: list[int]


class _Snapshot(msgspec.Struct, array_like=True):
    format: int
    status: str
    soak_start: int
    window_start: int
    window_requests: int
    window_errors: int
    soak_requests: int
    soak_errors: int
    soak_bins: _Sparse
    open_bins: dict[int, _Sparse]
    looks: int
    pass_looks: int
    hold_until: int
    down_ms: int
    silent_from: int
    down_counted_until: int
    stall_reported_for: int
    release_reported_for: int
    late_events: int
    max_ts: int | None
    open_panes: dict[int, tuple[int, int]]
    stalled_ms: int = 0  # added in place (older format-2 snapshots have none: nothing was discounted then)
    # sequential method: criterion -> (log Shiryaev-Roberts sums, run start, run requests, run hits); added in
    # place: an older snapshot restarts its restarted tests empty (only sudden-breach evidence is lost)
    restarts: dict[str, tuple[list[float], int, int, int]] = {}
    side: bytes = b""  # added in place: the side-input ledger (core/side_inputs.py); empty when nothing came
    baseline: bytes = b""  # added in place: the no_regression baseline (core/slice_ledger.py); empty when none came
    cross: bytes = b""  # added in place: the cross-region requests' ledger (core/cross_region.py); empty when none


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_Snapshot)


def _sparse(bins: sketch.Bins) -> _Sparse:
    indices, counts = sketch.to_sparse(bins)
    return _Sparse(indices, counts)


def dump(state: GateState) -> bytes:
    return _ENCODER.encode(
        _Snapshot(
            format=FORMAT,
            status=state.status,
            soak_start=state.soak_start,
            window_start=state.window_start,
            window_requests=state.window_requests,
            window_errors=state.window_errors,
            soak_requests=state.soak_requests,
            soak_errors=state.soak_errors,
            soak_bins=_sparse(state.soak_bins),
            open_bins={w: _sparse(b) for w, b in state.open_bins.items()},
            looks=state.looks,
            pass_looks=state.pass_looks,
            hold_until=state.hold_until,
            down_ms=state.down_ms,
            silent_from=state.silent_from,
            down_counted_until=state.down_counted_until,
            stall_reported_for=state.stall_reported_for,
            release_reported_for=state.release_reported_for,
            late_events=state.late_events,
            max_ts=state.max_ts,
            open_panes={p: (c[0], c[1]) for p, c in state.open_panes.items()},
            stalled_ms=state.stalled_ms,
            restarts={
                name: (r.log_sums, r.run_start, r.run_requests, r.run_hits) for name, r in state.restarts.items()
            },
            side=side_ledger.dump_ledger(state.side),
            baseline=slice_ledger.dump_ledger(state.baseline),
            cross=slice_ledger.dump_ledger(state.cross),
        )
    )


def load(raw: bytes) -> GateState:
    """The state ``dump`` wrote; raises ValueError on bytes that are not a snapshot of this format."""
    try:
        snap = _DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"not a gate snapshot: {exc}") from None
    if snap.format != FORMAT:
        raise ValueError(f"gate snapshot format {snap.format}; this version reads format {FORMAT}")
    if snap.status not in ("waiting", "soaking", "passed", "held"):
        raise ValueError(f"gate snapshot has unknown status {snap.status!r}")
    return GateState(
        status=snap.status,  # type: ignore[arg-type]  # checked just above
        soak_start=snap.soak_start,
        window_start=snap.window_start,
        window_requests=snap.window_requests,
        window_errors=snap.window_errors,
        soak_requests=snap.soak_requests,
        soak_errors=snap.soak_errors,
        soak_bins=sketch.from_sparse(snap.soak_bins.indices, snap.soak_bins.counts),
        open_bins={w: sketch.from_sparse(b.indices, b.counts) for w, b in snap.open_bins.items()},
        looks=snap.looks,
        pass_looks=snap.pass_looks,
        hold_until=snap.hold_until,
        down_ms=snap.down_ms,
        silent_from=snap.silent_from,
        down_counted_until=snap.down_counted_until,
        stall_reported_for=snap.stall_reported_for,
        release_reported_for=snap.release_reported_for,
        late_events=snap.late_events,
        max_ts=snap.max_ts,
        open_panes={p: [c[0], c[1]] for p, c in snap.open_panes.items()},
        stalled_ms=snap.stalled_ms,
        restarts={
            name: Restarts(list(sums), start, requests, hits)
            for name, (sums, start, requests, hits) in snap.restarts.items()
        },
        side=side_ledger.load_ledger(snap.side),
        baseline=slice_ledger.load_ledger(snap.baseline),
        cross=slice_ledger.load_ledger(snap.cross),
    )
