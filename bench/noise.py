"""How busy the machine was with other work while we measured (the machine is shared and noisy).

`/proc/stat` gives the CPU time of the whole machine; subtracting what the benchmark's own
processes used (their `process_time` deltas) leaves what everything else took.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


@dataclass(frozen=True)
class CpuSnapshot:
    busy_s: float  # user + nice + system + irq + softirq, all cores
    steal_s: float  # taken by the hypervisor
    total_s: float


def cpu_snapshot(stat: Path = Path("/proc/stat")) -> CpuSnapshot | None:
    try:
        fields = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) * _TICK_S for v in fields[1:9]]
    values += [0.0] * (8 - len(values))
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return CpuSnapshot(user + nice + system + irq + softirq, steal, sum(values))


@dataclass(frozen=True)
class Noise:
    """Machine CPU during a window, in core-seconds and as a share of all cores."""

    wall_s: float
    cores: int
    busy_core_s: float
    ours_core_s: float
    steal_core_s: float

    @property
    def others_pct(self) -> float:
        """Share of the machine's cores used by processes other than the benchmark's."""
        capacity = self.wall_s * self.cores
        return 100.0 * max(0.0, self.busy_core_s - self.ours_core_s) / capacity if capacity else 0.0

    @property
    def ours_pct(self) -> float:
        capacity = self.wall_s * self.cores
        return 100.0 * self.ours_core_s / capacity if capacity else 0.0

    @property
    def steal_pct(self) -> float:
        capacity = self.wall_s * self.cores
        return 100.0 * self.steal_core_s / capacity if capacity else 0.0


def noise_between(
    before: CpuSnapshot | None, after: CpuSnapshot | None, *, wall_s: float, ours_core_s: float
) -> Noise | None:
    if before is None or after is None:
        return None
    return Noise(
        wall_s=wall_s,
        cores=os.cpu_count() or 1,
        busy_core_s=after.busy_s - before.busy_s,
        ours_core_s=ours_core_s,
        steal_core_s=after.steal_s - before.steal_s,
    )


def combine(windows: list[Noise]) -> Noise | None:
    """Several windows as one (core-seconds add up)."""
    if not windows:
        return None
    return Noise(
        wall_s=sum(w.wall_s for w in windows),
        cores=windows[0].cores,
        busy_core_s=sum(w.busy_core_s for w in windows),
        ours_core_s=sum(w.ours_core_s for w in windows),
        steal_core_s=sum(w.steal_core_s for w in windows),
    )
