"""What the benchmark ran on: cores, CPU model, Python, and the versions that matter."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("cartesia-line", "httpx", "anyio", "tenacity", "opentelemetry-sdk", "uvicorn", "websockets")


@dataclass(frozen=True)
class Machine:
    cores: int
    cpu_model: str
    python: str
    platform: str
    load_at_start: str
    packages: dict[str, str] = field(default_factory=dict)


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def describe_machine() -> Machine:
    return Machine(
        cores=os.cpu_count() or 0,
        cpu_model=cpu_model(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        platform=platform.platform(),
        load_at_start=load_average(),
        packages={name: version_of(name) for name in PACKAGES},
    )
