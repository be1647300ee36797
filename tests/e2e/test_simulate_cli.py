"""The main job as users run it: `python -m lab simulate`, in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.otlp_decode import read_spans_json

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a real process
def test_simulate_prints_the_timeline_and_writes_the_calls_spans(tmp_path: Path) -> None:
    spans_file = tmp_path / "spans.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    cmd = [
        sys.executable,
        "-m",
        "lab",
        "simulate",
        "--scenario",
        "transfer-short",
        "--spans-json",
        str(spans_file),
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert "== transfer-short · policy: turn-end · harness: faithful ==" in done.stdout
    assert "call_transfer: accepted" in done.stdout and "after the confirming speech ended" in done.stdout
    assert "[1/1] transfer-short" in done.stderr  # progress
    spans = read_spans_json(spans_file)
    names = {s["name"] for s in spans}
    assert {"call", "agent.turn", "user.turn", "control call_transfer", "POST"} <= names
    assert len({s["trace_id"] for s in spans if s["name"] != "HEAD"}) == 1
    assert "/request/" not in spans_file.read_text()
