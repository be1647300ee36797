"""Smoke test of `python -m bench`: the smallest configuration of every section, end to end, in a
subprocess as `./dev bench` runs it. It checks the report's structure and the files written, never
a timing (those depend on the machine; the report judges them)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = [
    "## Machine",
    "## Targets",
    "## 1. Alignment",
    "## 2. Overhead",
    "## 3. Warm connection",
    "## 4. Faults",
    "## 5. Resources",
    "## 7. Levers",
    "## 8. Capacity",
    "## 9. Hang-up chain",
]
TARGETS = [
    "0 early fires, 0 lost actions",
    "dead air p99",
    "added latency over the floor",
    "8 concurrent calls in one process",
    "12 concurrent calls in one process",
    "fault mix",
    "tracing overhead",
    "of a whole lab call's CPU",
    "capacity: the shipped AGENT_MAX_CALLS",
    "hang-up chain, guard on",
]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("bench-smoke")
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--profile", "smoke", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "[bench" in done.stderr, "progress is shown on stderr"
    return done.stdout, out


@pytest.mark.slow
def test_report_has_every_section_in_order(smoke_run: tuple[str, Path]) -> None:
    report, _ = smoke_run
    positions = [report.find(heading) for heading in SECTIONS]
    assert all(p >= 0 for p in positions), [h for h, p in zip(SECTIONS, positions, strict=True) if p < 0]
    assert positions == sorted(positions)
    for package in ("cartesia-line", "httpx", "anyio", "tenacity", "opentelemetry-sdk"):
        assert f"| {package} |" in report


@pytest.mark.slow
def test_every_target_is_judged(smoke_run: tuple[str, Path]) -> None:
    report, _ = smoke_run
    targets = report.split("## Targets", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in targets.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(TARGETS)
    for row, target in zip(rows, TARGETS, strict=True):
        assert target in row
        assert re.search(r"\*\*(PASS|FAIL|INVALID)\*\*", row), row


@pytest.mark.slow
def test_both_policies_and_every_load_level_are_reported(smoke_run: tuple[str, Path]) -> None:
    report, _ = smoke_run
    alignment = report.split("## 1. Alignment", 1)[1].split("\n## ", 1)[0]
    assert "| published fixed sleeps" in alignment and "| ours (turn end)" in alignment
    overhead = report.split("## 2. Overhead", 1)[1].split("\n## ", 1)[0]
    for load in ("| 1 call |", "| 4 calls |", "| 8 calls |", "| 8 calls, tracing on |", "| 12 calls |"):
        assert load in overhead
    tls = report.split("## 3. Warm connection", 1)[1].split("\n## ", 1)[0]
    assert "| ratio fresh / warm |" in tls
    resources = report.split("## 5. Resources", 1)[1].split("\n## ", 1)[0]
    assert "tracing on adds" in resources and "Split: recording the spans" in resources
    levers = report.split("## 7. Levers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in levers.splitlines() if line.startswith("| ") and "---" not in line][1:]
    names = [row.split(" | ", 1)[0].removeprefix("| ") for row in rows]
    assert names == [
        "**shipped**", "asyncio loop", "GC: CPython defaults", "GC: freeze only", "GC: off (a bound)",
        "2 workers", "runtime as before",
    ]  # fmt: skip
    assert all("6/6, 0 dropped" in row for row in rows), rows  # every lever ran
    capacity = report.split("## 8. Capacity", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in capacity.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ", 1)[0] for row in rows] == ["| 2", "| 4"][: len(rows)] and rows, capacity
    assert all(re.search(r"\*\*(PASS|FAIL|INVALID)\*\*", row) for row in rows), rows


@pytest.mark.slow
def test_the_chain_section_plays_the_smoke_cases(smoke_run: tuple[str, Path]) -> None:
    report, _ = smoke_run
    chain = report.split("## 9. Hang-up chain", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in chain.splitlines() if line.startswith("| ") and "---" not in line][1:]
    played = [tuple(cell.strip() for cell in row.split("|")[1:5]) for row in rows]
    assert played == [
        ("new", "immediately", "0 ms", "on"), ("new", "immediately", "0 ms", "off"),
        ("new", "immediately", "400 ms", "on"), ("new", "immediately", "400 ms", "off"),
        ("before #17", "immediately", "0 ms", "-"), ("before #17", "immediately", "400 ms", "-"),
    ]  # fmt: skip
    assert "Guard on: **" in chain


@pytest.mark.slow
def test_results_folder_holds_the_report_plots_and_raw_samples(smoke_run: tuple[str, Path]) -> None:
    report, out = smoke_run
    assert (out / "report.md").read_text(encoding="utf-8").strip() == report.strip()
    for name in ("alignment.png", "overhead.png", "faults.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG"), name
        assert f"]({name})" in report
    for name in ("alignment.csv", "overhead.csv", "faults.csv"):
        assert len((out / name).read_text(encoding="utf-8").splitlines()) > 1, name
