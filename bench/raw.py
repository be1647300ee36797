"""Raw samples next to the report (CSV), for anyone who wants to re-plot or dig into a tail."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

from bench.alignment import AlignmentRun, case_of
from bench.faults import FaultResult
from bench.overhead import OverheadResult


def _write(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path.name


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.3f}"


def write_alignment(run: AlignmentRun, out: Path) -> str:
    header = ["index", "policy", "case", "kind", "close_after_end_call", "planned_speech_s", "speech_s"]
    header += ["early", "delivered", "offset_ms", "release_lag_ms", "posts", "effects"]
    rows = [
        [
            o.index,
            o.policy,
            case_of(o),
            o.kind,
            o.close_after_end_call,
            f"{o.planned_speech_s:.3f}",
            "" if o.speech_s is None else f"{o.speech_s:.3f}",
            int(o.early),
            int(o.delivered),
            _ms(o.offset_s),
            _ms(o.release_lag_s),
            o.posts,
            o.effects,
        ]
        for o in run.outcomes
    ]
    return _write(out / "alignment.csv", header, rows)


def write_overhead(result: OverheadResult, out: Path) -> str:
    rows: list[list[object]] = []
    for level in result.levels:
        for n, played in enumerate(level.rounds):
            rows += [[level.label, n, "ours", s.session, _ms(s.latency_s)] for s in played.samples]
            rows += [[level.label, n, "floor", "", _ms(f)] for f in played.floor_s]
    return _write(out / "overhead.csv", ["load", "round", "path", "session", "latency_ms"], rows)


def write_faults(result: FaultResult, out: Path) -> str:
    rows = [
        [
            a.session,
            int(a.accepted_at is not None),
            _ms(a.since_turn_end(a.accepted_at)),
            a.posts,
            " ".join(a.answers),
        ]
        for a in result.actions
    ]
    return _write(out / "faults.csv", ["session", "accepted", "to_accepted_ms", "posts", "answers"], rows)
