"""`python -m lab simulate`: play scripted calls offline and print when each action fired.

No keys, no network: the real app runs on loopback against a scripted LLM, a simulated Cartesia
harness that plays speech at a set pace, and a VoxEngine emulator.

Exit status of `--replay FILE`: 0 every action the recording asked for fired on time; 1 one fired
while the agent was speaking, or was lost (a timing regression); 3 the agent's replies could not
be rebuilt from the recording; 4 FILE is missing or is not a recording; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
from loguru import logger

from agent.call_limits import LimitTimings
from agent.settings import Settings
from lab.faults import FAULT_KINDS, Fault, FaultPlan
from lab.harness_profile import FAITHFUL, PROFILES
from lab.plot import plot_call
from lab.replay import CannotRebuild, NotARecording, replay
from lab.results import CallResult
from lab.scenarios import CATALOGUE, DEFAULT_SCENARIOS, Policy, Scenario, run_scenario
from lab.tts_model import TtsModel
from lab.voxengine_emulator import PlayoutGuard
from telemetry import TracingObserverFactory, configure_tracing, shutdown_tracing, tracing_observer_factory


def parse_fault(spec: str) -> Fault | None:
    """`503`, `429:2` (Retry-After seconds), `slow:0.5`, `hang`, `drop`, `non_json`, `not_ok`, `overrun`,
    `ok`."""
    name, _, arg = spec.partition(":")
    if name == "ok":
        return None
    if name.isdigit():
        return Fault.http(int(name), retry_after_s=int(arg) if arg else None)
    if name == "slow":
        return Fault.slow(float(arg or 0.5))
    factories = {
        "hang": Fault.hang,
        "drop": Fault.drop,
        "non_json": Fault.non_json,
        "not_ok": Fault.not_ok,
        "overrun": Fault.overrun,
    }
    if name not in factories:
        raise argparse.ArgumentTypeError(f"unknown fault {spec!r}")
    return factories[name]()


def parse_rate(spec: str) -> tuple[str, float]:
    kind, _, rate = spec.partition("=")
    if kind not in FAULT_KINDS or not rate:
        raise argparse.ArgumentTypeError(f"expected KIND=P with KIND in {sorted(FAULT_KINDS)}, got {spec!r}")
    return kind, float(rate)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab simulate", description=__doc__)
    p.add_argument(
        "--scenario", action="append", choices=sorted(CATALOGUE), help="repeatable; default: transfer, hangup"
    )
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--words-per-s", type=float, help="TTS speaking pace")
    p.add_argument("--first-audio-ms", type=float, help="TTS latency to the first audio")
    p.add_argument("--jitter-ms", type=float, help="random extra first-audio latency (seeded)")
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="F",
        help="VoxEngine answers in sequence, e.g. --fault 503 --fault 429:1",
    )
    p.add_argument(
        "--fault-rate",
        action="append",
        default=[],
        metavar="KIND=P",
        help="random faults, e.g. status=0.3 hang=0.1",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for random faults, TTS jitter and word acks")
    p.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default=FAITHFUL.name,
        help="how the simulated harness behaves (lab/harness_profile.py); default faithful",
    )
    p.add_argument(
        "--harness-closes",
        choices=["no", "immediately", "after_speech"],
        help="when the simulated harness closes the call after Line's end_call (default: the scenario's)",
    )
    p.add_argument(
        "--playout-lag-ms",
        type=float,
        default=0.0,
        help="VoxEngine plays the agent's audio this far behind the harness (lab/media_buffer.py)",
    )
    p.add_argument(
        "--guard",
        choices=["on", "off"],
        default="on",
        help="the scenario's hang-up playout guard (HANGUP_PLAYOUT_GUARD); default on",
    )
    p.add_argument("--guard-max-s", type=float, default=3.0, help="HANGUP_PLAYOUT_GUARD_MAX_S (default 3)")
    for flag, variable in (
        ("--silence-prompt-s", "VOX_SILENCE_PROMPT_S"),
        ("--silence-hangup-s", "VOX_SILENCE_HANGUP_S"),
        ("--max-call-s", "VOX_MAX_CALL_S"),
    ):
        p.add_argument(flag, type=float, help=f"the agent's {variable} (default: the scenario's)")
    p.add_argument(
        "--close-margin-s",
        type=float,
        help="with --max-call-s: the polite close this long before it (default 20 s)",
    )
    p.add_argument(
        "--fixed-sleeps", action="store_true", help="also replay the published 5 s / 3 s policy, side by side"
    )
    p.add_argument("--repeat", type=int, default=1, help="play each scenario this many times")
    p.add_argument(
        "--spans-json", metavar="FILE", help="also write the calls' spans to FILE (OTLP/JSON lines)"
    )
    p.add_argument("--plot", metavar="FILE.png", type=Path, help="draw each call's timeline (matplotlib)")
    p.add_argument(
        "--record",
        metavar="DIR",
        type=Path,
        help="record each call's harness traffic into DIR, as VOX_RECORD_DIR does on the server",
    )
    p.add_argument(
        "--replay",
        metavar="FILE",
        type=Path,
        help="replay a recorded call (VOX_RECORD_DIR) against the current app; exit status 0 on "
        "time, 1 an action fired during speech or was lost, 3 the agent's replies could not be "
        "rebuilt from it, 4 FILE is missing or not a recording",
    )
    p.add_argument("--verbose", action="store_true", help="show the app's own logs")
    return p


def plot_path(base: Path, n: int, total: int, label: str) -> Path:
    """`base` for a single call, else one file per call beside it."""
    return base if total == 1 else base.with_name(f"{base.stem}-{n}-{label}{base.suffix}")


def scenario_with_pace(scenario: Scenario, args: argparse.Namespace) -> Scenario:
    tts = scenario.tts
    if args.harness_closes:
        scenario = scenario.with_close(args.harness_closes)
    limits = {
        "silence_prompt_s": args.silence_prompt_s,
        "silence_hangup_s": args.silence_hangup_s,
        "max_call_s": args.max_call_s,
        "close_margin_s": args.close_margin_s,
    }
    if any(v is not None for v in limits.values()):
        base = scenario.agent_settings.get("limits", LimitTimings())
        given = {k: v for k, v in limits.items() if v is not None}
        scenario = dataclasses.replace(
            scenario, agent_settings={**scenario.agent_settings, "limits": dataclasses.replace(base, **given)}
        )
    return scenario.with_profile(PROFILES[args.profile]).with_tts(
        TtsModel(
            first_audio_s=tts.first_audio_s if args.first_audio_ms is None else args.first_audio_ms / 1000,
            words_per_s=args.words_per_s or tts.words_per_s,
            jitter_s=tts.jitter_s if args.jitter_ms is None else args.jitter_ms / 1000,
            seed=args.seed,
        )
    )


async def run(args: argparse.Namespace, tracing: TracingObserverFactory | None = None) -> list[CallResult]:
    names: Sequence[str] = args.scenario or DEFAULT_SCENARIOS
    policies: list[Policy] = ["turn-end", "fixed-sleeps"] if args.fixed_sleeps else ["turn-end"]
    faults = FaultPlan(
        sequence=tuple(parse_fault(f) for f in args.fault),
        rates={kind: rate for kind, rate in map(parse_rate, args.fault_rate)},  # type: ignore[misc]
        seed=args.seed,
    )
    plan = [(name, policy, i) for name in names for i in range(args.repeat) for policy in policies]
    settings = dataclasses.replace(Settings(), record_dir=args.record) if args.record else None
    results = []
    for n, (name, policy, _) in enumerate(plan, 1):
        scenario = scenario_with_pace(CATALOGUE[name](), args)
        print(f"[{n}/{len(plan)}] {name} ({policy}): {scenario.description} ...", file=sys.stderr, flush=True)
        result = await run_scenario(
            scenario,
            policy=policy,
            faults=faults,
            settings=settings,
            observers=[tracing] if tracing else [],
            playout_lag_s=args.playout_lag_ms / 1000,
            guard=PlayoutGuard(on=args.guard == "on", max_s=args.guard_max_s),
        )
        results.append(result)
        title = f"{name} · policy: {policy} · harness: {scenario.profile.name}"
        print(f"\n== {title} ==", flush=True)
        print(result.render(), flush=True)
        if args.plot:
            path = plot_call(result, plot_path(args.plot, n, len(plan), f"{name}-{policy}"), title=title)
            print(f"  plot: {path}", flush=True)
    return results


EXIT_TIMING, EXIT_CANNOT_REBUILD, EXIT_NOT_A_RECORDING = 1, 3, 4


async def run_replay(args: argparse.Namespace) -> int:
    try:
        result = await replay(args.replay)
    except NotARecording as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return EXIT_NOT_A_RECORDING
    except CannotRebuild as exc:
        print(f"replay of {args.replay}: {exc}", file=sys.stderr)
        return EXIT_CANNOT_REBUILD
    print(f"\n== replay of {args.replay} ==", flush=True)
    print(result.report(), flush=True)
    if args.plot:
        path = plot_call(result.call, args.plot, title=f"replay of {args.replay.name}")
        print(f"  plot: {path}", flush=True)
    return EXIT_TIMING if result.problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for name, make in sorted(CATALOGUE.items()):
            print(f"{name:16} {make().description}")
        return 0
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if args.verbose else "WARNING")
    if args.replay:
        return anyio.run(run_replay, args)
    # Spans go to OTEL_EXPORTER_OTLP_ENDPOINT (e.g. Jaeger) when set, and/or to --spans-json.
    configure_tracing(json_path=args.spans_json)
    try:
        anyio.run(run, args, tracing_observer_factory())
    finally:
        shutdown_tracing()
    return 0
