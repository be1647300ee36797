"""The production image's recipe, checked without a docker engine (none on CI machines, and base images
cannot be pulled): the Dockerfile is parsed, and (slow) its install steps run in a clean venv, from which
the server starts and answers the recipe's own HEALTHCHECK.

Not verified here: the base image, the build under a real engine, the image's file ownership."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import shlex
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from dockerfile_parse import DockerfileParser

from agent.settings import DEFAULT_PORT
from tests.server_process import free_port, running_server

ROOT = Path(__file__).resolve().parents[2]


def _image_deps() -> Any:
    spec = importlib.util.spec_from_file_location("image_deps", ROOT / "deploy" / "image_deps.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


IMAGE_DEPS = _image_deps()  # deploy/image_deps.py runs in the builder stage before any install: not a package
PARSED = DockerfileParser(str(ROOT / "Dockerfile"))
STRUCTURE: list[dict[str, Any]] = PARSED.structure


def _stages() -> list[list[dict[str, Any]]]:
    stages: list[list[dict[str, Any]]] = []
    for item in STRUCTURE:
        if item["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(item)
    return stages


BUILDER, RUNTIME = _stages()


def _values(stage: list[dict[str, Any]], instruction: str) -> list[str]:
    return [str(item["value"]) for item in stage if item["instruction"] == instruction]


def _exec_form(value: str) -> list[str]:
    form = json.loads(value)
    assert isinstance(form, list) and all(isinstance(arg, str) for arg in form), value
    return form


def test_two_stages_the_runtime_one_gets_only_the_builders_venv_and_the_agent() -> None:
    assert [stage[0]["value"].split()[-1] for stage in (BUILDER, RUNTIME)] == ["builder", "runtime"]
    copies = [value.split() for value in _values(RUNTIME, "COPY")]
    assert copies[0] == ["--from=builder", "/opt/venv", "/opt/venv"]
    assert {tuple(copy) for copy in copies[1:]} == {
        ("main.py", "./"),
        ("agent/", "agent/"),
        ("telemetry/", "telemetry/"),
    }


def test_it_runs_python_main_py_as_a_non_root_user_stopped_by_sigterm() -> None:
    assert _values(RUNTIME, "ENTRYPOINT") == []
    assert _exec_form(_values(RUNTIME, "CMD")[-1]) == ["python", "main.py"]  # exec form: python is PID 1
    user = _values(RUNTIME, "USER")[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric: Kubernetes' runAsNonRoot can check it
    assert _values(RUNTIME, "STOPSIGNAL") == ["SIGTERM"]


def test_port_and_environment_match_the_settings() -> None:
    envs = PARSED.envs  # the last stage's
    assert envs["PORT"] == str(DEFAULT_PORT) and _values(RUNTIME, "EXPOSE") == [str(DEFAULT_PORT)]
    assert envs["HOST"] == "0.0.0.0"
    assert envs["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"  # no network fetch of the cost map at import
    assert envs["PATH"].startswith("/opt/venv/bin:")


def _healthcheck_command() -> list[str]:
    (value,) = _values(RUNTIME, "HEALTHCHECK")
    options, _, command = value.partition("CMD")
    assert "--interval" in options and "--timeout" in options
    return _exec_form(command.strip())


def test_the_healthcheck_asks_status_on_port_with_python_only() -> None:
    command = _healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert "/status" in command[2] and "os.environ.get('PORT'" in command[2]


def _install_steps() -> str:
    (run,) = _values(BUILDER, "RUN")
    return run


def test_dependencies_come_from_the_lock_only() -> None:
    run = _install_steps()
    installs = [part for part in run.split("&&") if " install " in part]
    assert installs and all("--constraint requirements.lock" in part for part in installs)
    assert run.strip().endswith(
        "python deploy/image_deps.py verify"
    )  # the build fails on an unpinned package
    assert "requirements.lock" in " ".join(_values(BUILDER, "COPY"))


def test_unpinned_names_what_the_lock_does_not_pin() -> None:
    pins = IMAGE_DEPS.lock_pins(ROOT / "requirements.lock")
    assert pins["httpx"] and IMAGE_DEPS.unpinned({"httpx": pins["httpx"], "pip": "1"}, pins) == []
    assert IMAGE_DEPS.unpinned({"httpx": "0.0.1", "leftpad": "1.0"}, pins) == [
        f"httpx==0.0.1 (lock: {pins['httpx']})",
        "leftpad==1.0 (lock: absent)",
    ]


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore's rules as far as this file uses them: the last matching pattern wins, `!` re-includes,
    a pattern matches a path or any of its parent directories, `**/` any depth."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.removeprefix("!").rstrip("/")
        tails = [body.removeprefix("**/")] if body.startswith("**/") else []
        for candidate in candidates:
            names = [
                candidate,
                *["/".join(candidate.split("/")[i:]) for i in range(1, candidate.count("/") + 1)],
            ]
            if fnmatch.fnmatchcase(candidate, body) or any(
                fnmatch.fnmatchcase(n, t) for n in names for t in tails
            ):
                ignored = not negated
                break
    return ignored


IGNORE = [
    line.strip()
    for line in (ROOT / ".dockerignore").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


def _context_files() -> list[str]:
    """Every file a COPY from the build context names (directories walked)."""
    files: list[str] = []
    for stage in (BUILDER, RUNTIME):
        for value in _values(stage, "COPY"):
            args = [arg for arg in value.split() if not arg.startswith("--")]
            if value.startswith("--from"):
                continue
            for source in args[:-1]:
                path = ROOT / source
                assert path.exists(), source
                found = [path] if path.is_file() else [p for p in path.rglob("*.py") if p.is_file()]
                files += [str(p.relative_to(ROOT)) for p in found]
    return files


def test_the_build_context_holds_what_the_copies_need_and_no_secrets() -> None:
    needed = _context_files()
    assert "main.py" in needed and "agent/link.py" in needed
    assert [path for path in needed if _ignored(path, IGNORE)] == []
    for kept_out in (
        ".env",
        "agent/.env",
        "lab/harness.py",
        "tests/conftest.py",
        ".venv/bin/python",
        ".git/HEAD",
    ):
        assert _ignored(kept_out, IGNORE), kept_out
    assert _ignored("agent/__pycache__/app.cpython-311.pyc", IGNORE)


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_install_steps_build_a_venv_that_serves_and_passes_the_healthcheck(tmp_path: Path) -> None:
    # The build context as the engine would send it, and /opt/venv, /app under tmp_path.
    src, app, venv = tmp_path / "src", tmp_path / "app", tmp_path / "venv"
    for directory in (src / "deploy", app):
        directory.mkdir(parents=True)
    for name in ("requirements.lock", "pyproject.toml", "deploy/image_deps.py"):
        shutil.copy(ROOT / name, src / name)
    shutil.copy(ROOT / "main.py", app / "main.py")
    for package in ("agent", "telemetry"):
        shutil.copytree(ROOT / package, app / package, ignore=shutil.ignore_patterns("__pycache__"))
    bin_dir = tmp_path / "bin"  # `python` is the base image's: here, this interpreter
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    run = (
        _install_steps().replace("/opt/venv", str(venv)).replace("/tmp/runtime.txt", str(tmp_path / "rt.txt"))
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.update({k: v for k, v in os.environ.items() if k.startswith(("PIP_INDEX", "PIP_EXTRA", "PIP_CERT"))})
    cache = (
        Path.home() / ".cache" / "pip"
    )  # a warm pip cache keeps this bounded; the recipe itself keeps none
    if cache.is_dir():
        env["PIP_CACHE_DIR"] = str(cache)
    with anyio.fail_after(900):  # PyPI downloads when the cache is cold
        done = await anyio.run_process(["sh", "-c", run], cwd=src, env=env, check=False)
    assert done.returncode == 0, done.stdout.decode()[-3000:] + done.stderr.decode()[-3000:]
    with anyio.fail_after(120):
        installed = await anyio.run_process(
            [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"]
        )
    names = {item["name"].lower() for item in json.loads(installed.stdout.decode())}
    assert {"cartesia-line", "uvicorn", "uvloop", "httpx", "litellm"} <= names
    assert not names & {"pytest", "hypothesis", "mypy", "ruff", "matplotlib", "trustme", "dockerfile-parse"}

    port = free_port()
    server_env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "OPENAI_API_KEY": "sk-test",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [str(venv / "bin" / "python"), *_exec_form(_values(RUNTIME, "CMD")[-1])[1:]]
    async with running_server(
        ["sh", "-c", f"cd {shlex.quote(str(app))} && exec {shlex.join(cmd)}"], server_env, port
    ) as (proc, log):
        health = _healthcheck_command()
        health_env = {**server_env, "PATH": f"{venv / 'bin'}:/usr/bin:/bin"}
        checked = await anyio.run_process(
            [str(venv / "bin" / "python"), *health[1:]], env=health_env, check=False
        )
        assert checked.returncode == 0, checked.stderr
        proc.terminate()
    # uvicorn re-raises the SIGTERM it captured once its graceful shutdown is complete.
    assert proc.returncode in (0, -signal.SIGTERM), log.decode()[-3000:]
    assert "Application shutdown complete" in log.decode()
