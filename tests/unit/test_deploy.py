"""What the image installs (pyproject.toml's runtime dependencies: Dockerfile, deploy/image_deps.py)
leaves the lab, the benchmarks and the checks out, and the deployed agent imports nothing of them.

cartesia.toml (the descriptor of `cartesia deploy`) is gone: Cartesia stopped hosting Line SDK code on
2026-12-01 (docs.cartesia.ai/agents/migrate-from-line-sdk), and nothing else read it. What it checked
moved: the port and the secrets the server needs are checked against the Dockerfile
(test_dockerfile.py) and the Kubernetes manifests (test_k8s_manifests.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_runtime_dependencies_leave_the_lab_bench_and_checks_to_extras() -> None:
    runtime = " ".join(PYPROJECT["project"]["dependencies"]).lower()
    for extra in (
        "matplotlib",
        "cryptography",
        "hypothesis",
        "pytest",
        "mypy",
        "ruff",
        "opentelemetry-proto",
    ):
        assert extra not in runtime, extra
    assert set(PYPROJECT["project"]["optional-dependencies"]) >= {"lab", "bench", "test"}
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["agent*", "telemetry*"]


def test_the_deployed_agent_imports_nothing_of_the_lab() -> None:
    probe = "import json, sys, main; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    env = {"PATH": os.environ.get("PATH", ""), "OPENAI_API_KEY": "k", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    imported = set(json.loads(done.stdout.splitlines()[-1]))
    assert {"main", "agent", "telemetry"} <= imported
    assert not imported & {"lab", "bench", "tests", "matplotlib", "cryptography", "hypothesis", "pytest"}
