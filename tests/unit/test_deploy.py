"""What Cartesia's cloud reads (cartesia.toml, pyproject.toml's runtime dependencies) agrees with
what the server really needs, and the deployed agent imports nothing of the lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from agent.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
CARTESIA = tomllib.loads((ROOT / "cartesia.toml").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_cartesia_toml_has_cartesias_schema() -> None:
    # As cartesia-ai/line examples/form_filler/cartesia.toml: these tables, these keys.
    assert set(CARTESIA) == {"cartesia"}
    assert set(CARTESIA["cartesia"]) == {"name", "description", "version", "server", "environment"}
    assert set(CARTESIA["cartesia"]["server"]) == {"port", "host"}
    assert set(CARTESIA["cartesia"]["environment"]) == {"required_vars"}
    assert CARTESIA["cartesia"]["version"] == PYPROJECT["project"]["version"]


def test_the_server_listens_where_cartesia_toml_says() -> None:
    settings = Settings.from_env({"OPENAI_API_KEY": "k"})  # HOST and PORT unset, as in the cloud
    server = CARTESIA["cartesia"]["server"]
    assert (settings.host, settings.port) == (server["host"], server["port"])


def test_required_vars_are_exactly_what_the_server_needs_to_start() -> None:
    required: list[str] = CARTESIA["cartesia"]["environment"]["required_vars"]
    Settings.from_env(dict.fromkeys(required, "set"))  # all of them: it starts
    for name in required:  # any one missing: it refuses, naming it
        env = {other: "set" for other in required if other != name}
        with pytest.raises(SettingsError, match=f"^{name}"):
            Settings.from_env(env)


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
