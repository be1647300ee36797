"""The image's dependency set: pyproject.toml's runtime dependencies, at the versions requirements.lock pins.

    python deploy/image_deps.py requirements > runtime.txt   # what to install (with -c requirements.lock)
    python deploy/image_deps.py verify                        # every installed distribution is pinned

The Dockerfile's builder stage runs both; tests/unit/test_dockerfile.py runs the same steps in a clean
venv. `pip install --constraint` alone would still take a package the lock does not name (at
whatever version the index has); `verify` turns that into a failed build. Standard library only: it runs
before anything is installed.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import tomllib

# The venv's own tools: pip comes with `python -m venv`, not from the lock, and is not imported by the app.
VENV_TOOLS = frozenset({"pip", "setuptools", "wheel"})


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def runtime_requirements(pyproject: Path) -> list[str]:
    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def lock_pins(lock: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep:
                raise SystemExit(f"{lock}: {line!r} is not pinned with ==")
            pins[canonical(name)] = version.strip()
    return pins


def unpinned(installed: dict[str, str], pins: dict[str, str]) -> list[str]:
    """Installed distributions the lock does not pin at that version."""
    return sorted(
        f"{name}=={version} (lock: {pins.get(name, 'absent')})"
        for name, version in installed.items()
        if name not in VENV_TOOLS and pins.get(name) != version
    )


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[1]
    if argv == ["requirements"]:
        print("\n".join(runtime_requirements(root / "pyproject.toml")))
        return 0
    if argv == ["verify"]:
        installed = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}
        problems = unpinned(installed, lock_pins(root / "requirements.lock"))
        for problem in problems:
            print(f"not pinned by requirements.lock: {problem}", file=sys.stderr)
        return 1 if problems else 0
    print("usage: python deploy/image_deps.py requirements|verify", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
