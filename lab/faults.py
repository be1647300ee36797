"""Fault plans for the VoxEngine emulator: which control requests get which transport fault.
(bench/faults.py is not a twin: it is the benchmark section that measures delivery under a plan
made here.)

A faulted request never reaches the contract logic (no effect, not remembered for duplicates),
so a later retry with the same id is the first real one.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FAULT_KINDS", "Fault", "FaultKind", "FaultPicker", "FaultPlan"]

FaultKind = Literal["status", "slow", "hang", "drop", "non_json", "not_ok", "overrun"]
FAULT_KINDS: tuple[FaultKind, ...] = ("status", "slow", "hang", "drop", "non_json", "not_ok", "overrun")


@dataclass(frozen=True)
class Fault:
    """One injected fault.

    - ``status``: answer HTTP ``status`` (e.g. 500/502/503/429) with a short text body, plus a
      ``Retry-After: <retry_after_s>`` header (whole seconds, as RFC 9110 and the agent's parser
      want) when given;
    - ``slow``: run the contract normally (the effect happens on arrival) but answer after
      ``delay_s``;
    - ``hang``: never answer; hold the connection until the client closes it or the emulator stops;
    - ``drop``: close the TCP connection without any response, after reading the request;
    - ``non_json``: HTTP 200 with a body that is not JSON;
    - ``not_ok``: HTTP 200 ``{"ok": false, "error": "injected"}``;
    - ``overrun``: the scenario's handler runs past VoxEngine's callback limit ("Callback
      execution time is limited to 1 second", VoxEngine limits page) and is aborted: no effect,
      and (assumption: the platform's answer to an aborted callback is not documented) HTTP 500
      once the limit has passed.
    """

    kind: FaultKind
    status: int = 503
    retry_after_s: int | None = None
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.kind == "status" and not 100 <= self.status <= 599:
            raise ValueError(f"bad status {self.status}")
        if self.retry_after_s is not None and self.retry_after_s < 0:
            raise ValueError("retry_after_s must be >= 0")

    @classmethod
    def http(cls, status: int = 503, *, retry_after_s: int | None = None) -> Fault:
        return cls("status", status=status, retry_after_s=retry_after_s)

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        return cls("slow", delay_s=delay_s)

    @classmethod
    def hang(cls) -> Fault:
        return cls("hang")

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")

    @classmethod
    def non_json(cls) -> Fault:
        return cls("non_json")

    @classmethod
    def not_ok(cls) -> Fault:
        return cls("not_ok")

    @classmethod
    def overrun(cls) -> Fault:
        return cls("overrun")


_DEFAULT_TEMPLATES: dict[FaultKind, Fault] = {
    "status": Fault.http(503),
    "slow": Fault.slow(0.05),
    "hang": Fault.hang(),
    "drop": Fault.drop(),
    "non_json": Fault.non_json(),
    "not_ok": Fault.not_ok(),
    "overrun": Fault.overrun(),
}


@dataclass(frozen=True)
class FaultPlan:
    """Which control requests are faulted.

    - ``sequence``: the Nth control request (1-based, across all sessions) gets ``sequence[N-1]``
      (``None`` = normal); with ``per_attempt=True`` the index is instead the attempt number of
      the request's action id (so ``[Fault.drop(), Fault.http(503)]`` drops every id's first
      attempt, answers 503 to its second, and lets the third through).
    - ``rates``: for requests the sequence does not cover, kind → probability (sum ≤ 1), drawn
      from ``random.Random(seed)`` (one draw per control request, so runs are reproducible);
      ``templates`` overrides the fault used per kind (default: 503, 50 ms slow, ...);
      ``rate_max_attempt`` limits rate faults to attempts ≤ that number of each id.
    """

    sequence: Sequence[Fault | None] = ()
    per_attempt: bool = False
    rates: Mapping[FaultKind, float] = field(default_factory=dict)
    seed: int = 0
    templates: Mapping[FaultKind, Fault] = field(default_factory=dict)
    rate_max_attempt: int | None = None

    def __post_init__(self) -> None:
        for kind, rate in self.rates.items():
            if kind not in FAULT_KINDS or not 0.0 <= rate <= 1.0:
                raise ValueError(f"bad rate {kind!r}: {rate!r}")
        if sum(self.rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates add up to more than 1")


class FaultPicker:
    """The stateful side of a plan (request counter and seeded RNG) for one emulator."""

    def __init__(self, plan: FaultPlan | None) -> None:
        self._plan = plan or FaultPlan()
        self._rng = random.Random(self._plan.seed)
        self._count = 0

    def pick(self, attempt: int) -> Fault | None:
        """The fault for the next control request, which is ``attempt`` for its id."""
        plan = self._plan
        self._count += 1
        draw = self._rng.random() if plan.rates else 1.0
        index = (attempt if plan.per_attempt else self._count) - 1
        if index < len(plan.sequence):
            return plan.sequence[index]
        if plan.rate_max_attempt is not None and attempt > plan.rate_max_attempt:
            return None
        total = 0.0
        for kind, rate in plan.rates.items():
            total += rate
            if draw < total:
                return plan.templates.get(kind, _DEFAULT_TEMPLATES[kind])
        return None
