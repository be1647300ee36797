"""The Markdown report: machine, targets (PASS/FAIL), then one section per measurement."""

from __future__ import annotations

from collections.abc import Sequence

from agent.runtime import SERVER_GC
from bench.alignment import POLICIES, AlignmentRun, case_of, policy_stats
from bench.capacity import CapacityResult
from bench.chain import ChainResult
from bench.checks import checks
from bench.config import BenchConfig
from bench.corpus import MAX_PACE, MIN_PACE
from bench.faults import FAULT_RATES, FAULT_STATUS, FaultResult
from bench.lab_tracing import LabTracingCost
from bench.levers import LeverResult
from bench.load import latencies
from bench.machine import Machine
from bench.markdown import diff, others, p, ratio_cell, table
from bench.noise import Noise
from bench.overhead import Level, OverheadResult
from bench.resources import SHIPPED, tracing_cost
from bench.results import BenchRun
from bench.stats import fmt_ms, summarize
from bench.tls_warm import TlsResult
from lab.chain import GOODBYE, render_table

RESOURCE_HEADER: tuple[str, ...] = ("run", "tracing", "app", "CPU ms/call", "of which span export")
RESOURCE_HEADER += ("peak RSS kB/call", "peak RSS MB", "spans/call", "latency p99", "app loop lag max")
RESOURCE_HEADER += ("others' CPU",)
LABELS = {"fixed-sleeps": "published fixed sleeps (5 s / 3 s)", "turn-end": "ours (turn end)"}


def render(run: BenchRun) -> str:
    lines = [
        f"# vox-line-agent benchmark — {run.config.name} run",
        "",
        f"Started {run.started_at}, took {run.duration_s / 60:.1f} min. "
        "All numbers below come from this one run; every comparison was measured side by side in it.",
        "",
    ]
    lines += _machine(run.machine, run.load_at_end)
    lines += ["## Targets", ""]
    judged = checks(run)
    lines += table(["target", "measured", "result"], [[c.target, c.measured, c.verdict] for c in judged])
    for check in sorted(judged, key=lambda c: c.passed is not False):  # FAILs first
        if check.why:
            kind = "FAIL" if check.passed is False else "note"
            lines += ["", f"- {kind} · {check.target}: {check.why}."]
    lines.append("")
    if run.alignment is not None:
        lines += _alignment(run.alignment, run.plots.get("alignment"))
    if run.overhead is not None:
        lines += _overhead(run.overhead, run.config, run.plots.get("overhead"))
    if run.tls is not None:
        lines += _tls(run.tls)
    if run.faults is not None:
        lines += _faults(run.faults, run.plots.get("faults"))
    if run.lab_tracing is not None:
        lines += _lab_tracing(run.lab_tracing)
    if run.overhead is not None:
        lines += _resources(run.overhead, run.config)
    if run.levers is not None:
        lines += _levers(run.levers)
    if run.capacity is not None:
        lines += _capacity(run.capacity)
    if run.chain is not None:
        lines += _chain(run.chain)
    lines += _notes()
    return "\n".join(lines) + "\n"


def _machine(machine: Machine, load_at_end: str) -> list[str]:
    rows = [
        ["cores", str(machine.cores)],
        ["CPU", machine.cpu_model],
        ["Python", machine.python],
        ["platform", machine.platform],
        ["load average at start (1/5/15 min)", machine.load_at_start],
        ["load average at end", load_at_end or "–"],
    ]
    rows += [[name, version] for name, version in machine.packages.items()]
    return ["## Machine", "", *table(["", ""], rows), ""]


def _alignment(run: AlignmentRun, plot: str | None) -> list[str]:
    outcomes = run.outcomes
    stats = [policy_stats(outcomes, p) for p in POLICIES]
    calls = stats[0].calls
    speech = [o.planned_speech_s for o in outcomes if o.policy == "turn-end"]
    lines = [
        "## 1. Alignment: does the action wait for its confirmation?",
        "",
        f"{calls} scripted calls, each played under both policies on the same script: the real app "
        "(Line `LlmAgent` through LiteLLM against a scripted OpenAI-compatible endpoint), the harness "
        f"simulator playing speech at {MIN_PACE}–{MAX_PACE} words/s with 0.2–0.5 s to first audio, and "
        f"the VoxEngine emulator. Confirmations last {min(speech, default=0):.1f}–"
        f"{max(speech, default=0):.1f} s. "
        f"{run.concurrency} calls in flight per policy; the two policies ran at the same time in two "
        f"processes ({'side by side' if run.parallel else 'one after the other'}, {run.wall_s:.0f} s).",
        "",
        _noise_sentence(run.noise),
        "",
        "Offset = POST arrival at VoxEngine − end of the confirming speech (last word played, caller "
        "talking over it, or socket closed, whichever first). Early = a POST arrived before that end "
        "(the caller is cut off). Dead air = the offset of delivered actions that were not early.",
        "",
    ]
    rows = []
    for s in stats:
        rows.append(
            [
                LABELS[s.policy],
                str(s.calls),
                f"{s.early} ({s.early_pct:.0f}%)",
                f"{s.lost} ({s.lost_pct:.0f}%)",
                *(fmt_ms(p(s.dead_air, w)) for w in ("p50", "p95", "p99", "max")),
                str(s.duplicate_effects),
            ]
        )
    header = ["policy", "calls", "early fires", "never delivered"]
    header += ["dead air p50", "p95", "p99", "max", "duplicate effects"]
    lines += table(header, rows)
    lines += ["", "By case (early fires / never delivered, per policy):", ""]
    cases = sorted({case_of(o) for o in outcomes})
    case_rows = []
    for case in cases:
        row = [case, str(sum(1 for o in outcomes if o.policy == "turn-end" and case_of(o) == case))]
        for policy in POLICIES:
            mine = [o for o in outcomes if o.policy == policy and case_of(o) == case]
            row.append(f"{sum(o.early for o in mine)} / {sum(not o.delivered for o in mine)}")
        ours = [o for o in outcomes if o.policy == "turn-end" and case_of(o) == case]
        air = summarize([o.dead_air_s for o in ours if o.dead_air_s is not None])
        release = summarize([o.release_lag_s for o in ours if o.release_lag_s is not None])
        row.append(f"{fmt_ms(p(air, 'p50'))} / {fmt_ms(p(air, 'max'))}")
        row.append(f"{fmt_ms(p(release, 'p50'))} / {fmt_ms(p(release, 'max'))}")
        case_rows.append(row)
    header = ["case", "calls", LABELS["fixed-sleeps"], LABELS["turn-end"], "ours: dead air p50 / max"]
    header.append("ours: speech end → released p50 / max")
    lines += table(header, case_rows)
    if plot:
        lines += ["", f"![alignment: offset of each action against its confirmation]({plot})"]
    return [*lines, ""]


def _noise_sentence(noise: Noise | None) -> str:
    if noise is None:
        return ""
    return (
        f"Machine CPU during this section: the benchmark's processes used {noise.ours_pct:.0f}% of "
        f"the {noise.cores} cores, other processes {noise.others_pct:.0f}%"
        + (f", hypervisor steal {noise.steal_pct:.0f}%." if noise.steal_pct >= 0.5 else ".")
    )


def _overhead(result: OverheadResult, config: BenchConfig, plot: str | None) -> list[str]:
    lines = [
        "## 2. Overhead: turn end → POST, against the floor",
        "",
        "From the harness writing `agent_state: idle` to the control POST arriving at the emulator, "
        "next to the floor: a bare pooled httpx POST made from the app's own process to the same "
        "emulator, at the same moments of the same rounds. The app runs in its own process with an "
        "LLM-free agent (`bench/light_agent.py`: our real `call_transfer` tool, no LiteLLM); "
        "generator processes (`bench/world.py`) play the harness and VoxEngine. Under load every "
        "call of a round is "
        f"connected before any action fires, calls chat at {config.words_per_s:g} words/s while they "
        f"wait, and actions fire over {config.spread_s:g} s. One call at a time, the confirmation plays at "
        "40 words/s (the measured path starts at the idle). Added and ratio compare percentiles of "
        "the two distributions (they are not paired samples).",
        "",
    ]
    rows = []
    for lv in result.levels:
        ours, floor = lv.ours, lv.floor
        pauses = lv.gc_full_pauses_ms
        rows.append(
            [
                lv.label,
                f"{lv.calls - lv.lost}/{lv.calls}",
                fmt_ms(p(ours, "p50")),
                fmt_ms(p(ours, "p99")),
                fmt_ms(p(floor, "p50")),
                fmt_ms(p(floor, "p99")),
                fmt_ms(diff(p(ours, "p50"), p(floor, "p50"))),
                fmt_ms(diff(p(ours, "p99"), p(floor, "p99"))),
                ratio_cell(p(ours, "p50"), p(floor, "p50")),
                ratio_cell(p(ours, "p99"), p(floor, "p99")),
                f"{len(pauses)}, max {max(pauses):.0f} ms" if pauses else "0",
                others(lv.noise),
            ]
        )
    header = [
        "load",
        "POSTs seen",
        "ours p50",
        "ours p99",
        "floor p50",
        "floor p99",
        "added p50",
        "added p99",
    ]
    header += ["p50 ratio", "p99 ratio", "app full GCs", "others' CPU"]
    lines += table(header, rows)
    lines += ["", *_breakdown(result.levels), ""]
    lines += [
        "",
        "The app runs the shipped runtime (`agent/runtime.py`: uvloop, httptools, its GC policy); "
        "section 7 measures each alternative. The harness and the emulator run in generator processes "
        "(`bench/world.py`, at most the configured calls per generator); each collects before a round "
        "and not during it, so its own GC does not delay the emulator's arrival stamps.",
    ]
    if plot:
        lines += ["", f"![overhead]({plot})"]
    return [*lines, ""]


def _breakdown(levels: Sequence[Level]) -> list[str]:
    rows = []
    for lv in levels:
        cells = [lv.label]
        for i in range(3):
            seg = lv.segment(i)
            cells.append(f"{fmt_ms(p(seg, 'p50'))} / {fmt_ms(p(seg, 'p99'))}")
        cells += [
            f"{fmt_ms(p(lv.app_lag, 'p99'))} / {fmt_ms(p(lv.app_lag, 'max'))}",
            f"{fmt_ms(p(lv.world_lag, 'p99'))} / {fmt_ms(p(lv.world_lag, 'max'))}",
            f"{lv.app_busy_pct:.0f}%",
        ]
        rows.append(cells)
    header = ["load", "idle → released", "released → POST started", "POST started → arrival"]
    header += ["app loop lag p99 / max", "harness+emulator loop lag p99 / max", "app CPU (one core)"]
    return [
        "Where our time goes (p50 / p99 of each segment; released and POST started are stamped in "
        "the app by an observer): the first segment is the websocket hop, Line's event handling and "
        "the flush policy; the second the sender task and the retry loop; the third what the floor "
        "measures too.",
        "",
        *table(header, rows),
    ]


def _tls(result: TlsResult) -> list[str]:
    rows = []
    for kind, label in (
        ("warm", "ours: pooled, warmed at call start"),
        ("fresh", "published: new client per POST"),
    ):
        arrival, done = result.arrival(kind), result.done(kind)
        rows.append(
            [
                label,
                str(len(getattr(result, kind))),
                fmt_ms(p(arrival, "p50")),
                fmt_ms(p(arrival, "p99")),
                fmt_ms(p(done, "p50")),
                fmt_ms(p(done, "p99")),
                str(result.failures(kind)),
            ]
        )
    a_w, a_f = result.arrival("warm"), result.arrival("fresh")
    rows.append(
        [
            "ratio fresh / warm",
            "",
            ratio_cell(p(a_f, "p50"), p(a_w, "p50")),
            ratio_cell(p(a_f, "p99"), p(a_w, "p99")),
            ratio_cell(p(result.done("fresh"), "p50"), p(result.done("warm"), "p50")),
            ratio_cell(p(result.done("fresh"), "p99"), p(result.done("warm"), "p99")),
            "",
        ]
    )
    return [
        "## 3. Warm connection: a flush over TLS",
        "",
        "HTTPS on loopback (throwaway CA, `lab.tls`). "
        "Ours: `make_control_client(<the emulator's network>)`, "
        "`VoxEngineClient.warm` when the call starts, `deliver` 50 ms later. Published: a new "
        "`httpx.AsyncClient` per POST, its SSL context built per client as httpx builds it "
        "(certifi's bundle, plus the lab CA). Samples alternate between the two.",
        "",
        *table(
            ["client", "flushes", "to arrival p50", "p99", "to answer p50", "p99", "failures"],
            rows,
        ),
        "",
    ]


def _lab_tracing(cost: LabTracingCost) -> list[str]:
    return [
        "",
        "## 6. Tracing on a whole lab call",
        "",
        "The CPU of one whole simulated call in one process: the real `LlmAgent` through LiteLLM against "
        "the scripted LLM, the harness simulator, the VoxEngine emulator and the app, with spans exported "
        "over OTLP/HTTP to a receiver on 127.0.0.1. Calls alternate tracing off and on; medians of "
        f"{cost.calls} pairs. (Section 5 measures the stricter case: the app alone, without an LLM.)",
        "",
        "| tracing | CPU per call (median) |",
        "| --- | --- |",
        f"| off | {cost.off_cpu_ms:.1f} ms |",
        f"| on | {cost.on_cpu_ms:.1f} ms ({cost.overhead_pct:+.1f}%) |",
    ]


def _faults(result: FaultResult, plot: str | None) -> list[str]:
    retry = result.retry
    injected = ", ".join(f"{k} {v}" for k, v in sorted(result.injected.items())) or "none"
    posts = sorted(a.posts for a in result.actions)
    lines = [
        "## 4. Faults: delivery when VoxEngine misbehaves",
        "",
        f"Emulator fault rates per request: {FAULT_RATES['status']:.0%} HTTP {FAULT_STATUS}, "
        f"{FAULT_RATES['hang']:.0%} hang (no answer until the client gives up), "
        f"{FAULT_RATES['drop']:.0%} connection dropped after the request (seeded; each retry draws again). "
        f"Retry policy: per-attempt timeout {retry.attempt_timeout_s:g} s (shortened from 2 s), deadline "
        f"{retry.deadline_s:g} s, backoff {retry.backoff_initial_s:g} s ×2 up to {retry.backoff_max_s:g} s "
        f"+ up to {retry.jitter_s:g} s jitter. {result.calls} calls, the app process as in section 2, "
        "actions spread over the round.",
        "",
    ]
    rows = [
        ["actions", str(result.calls)],
        ["delivered", f"{result.delivered} ({result.delivered_pct:.1f}%)"],
        ["telephony effects at the emulator", str(result.effects)],
        ["duplicate effects (per action id, beyond the first)", str(result.duplicate_effects)],
        ["requests answered `duplicate: true`", str(result.duplicate_answers)],
        ["faults injected", injected],
        [
            "POSTs per action (median / max)",
            f"{posts[len(posts) // 2] if posts else 0} / {max(posts, default=0)}",
        ],
    ]
    t = result.time_to_accepted
    rows.append(
        [
            "turn end → accepted POST p50 / p99 / max",
            f"{fmt_ms(p(t, 'p50'))} / {fmt_ms(p(t, 'p99'))} / {fmt_ms(p(t, 'max'))}",
        ]
    )
    lines += table(["", ""], rows)
    for trace in result.undelivered:
        lines += [
            "",
            f"- never accepted: `{trace.session}`: {' → '.join(trace.answers)} "
            f"(last POST {trace.since_turn_end(trace.last_post_at) or 0.0:.2f} s after the turn end)",
        ]
    if plot:
        lines += ["", f"![faults]({plot})"]
    return [*lines, ""]


def _resources(result: OverheadResult, config: BenchConfig) -> list[str]:
    cost = tracing_cost(result.high_runs)
    rows = []
    for n, run in enumerate(result.high_runs, 1):
        rows.append(
            [
                str(n),
                "on" if run.tracing else "off",
                run.label,
                f"{run.cpu_ms_per_call:.2f}",
                f"{run.export_cpu_ms_per_call:.2f}" if run.tracing else "–",
                f"{run.peak_kb_per_call:.0f}",
                f"{run.after.peak_rss_kb / 1024:.0f}",
                f"{run.spans_per_call:.1f}" if run.tracing else "–",
                fmt_ms(p(summarize(latencies([run.round])), "p99")),
                fmt_ms(p(summarize(run.round.app.lag_s), "max")),
                others(run.round.noise),
            ]
        )
    lines = [
        f"## 5. Resources at {config.high_calls} concurrent calls",
        "",
        "Per call, from the app process (each run a fresh process, warmed up first): CPU = "
        "`time.process_time()` over the whole round (connect, chat, action, hang-up drained, spans "
        "exported) ÷ calls; peak RSS = VmHWM reset just before the round, minus the RSS then, ÷ calls. "
        "Tracing on = the `telemetry` package as the app uses it: `create_tracer_provider` (batched, "
        "redacted) exporting OTLP/HTTP protobuf to a receiver on 127.0.0.1 in the benchmark process, "
        "`tracing_observer_factory(provider)` as the app's observer (its POST spans included), the "
        "SDK's OTLP/HTTP exporter (`OTLPSpanExporter`, as `telemetry.setup` builds it). "
        "`spans discarded`: tracing on, "
        "but the exporter drops every span, so its cost is recording the spans without exporting "
        "them. Untraced runs sit between the traced ones, and each traced run is compared with the "
        "untraced runs next to it, so the machine's drift over the section cancels.",
        "",
        *table(RESOURCE_HEADER, rows),
        "",
    ]
    if cost is not None:
        lines += [
            f"Tracing: {cost.off_cpu_ms:.2f} ms CPU per call untraced (median of {cost.runs_off} runs); "
            f"tracing on adds {cost.overhead_ms:+.2f} ms ({cost.cpu_overhead_pct:+.1f}%), the median over "
            f"{cost.runs_on} traced runs of each run minus the untraced runs next to it ("
            f"{', '.join(f'{d:+.2f}' for d in cost.overhead_each)} ms), of which "
            f"{cost.export_cpu_ms:.2f} ms in the OTLP exporter's thread; peak RSS "
            f"{cost.off_peak_kb:.0f} → {cost.on_peak_kb:.0f} kB per call; {cost.spans_per_call:.1f} spans "
            f"per call exported in {result.otlp_requests} OTLP requests.",
            "",
        ]
        if cost.recording_ms is not None:
            export = cost.overhead_ms - cost.recording_ms
            lines += [
                f"Split: recording the spans (the observer on the event loop, the batch queue) "
                f"{cost.recording_ms:+.2f} ms per call ({100 * cost.recording_ms / cost.off_cpu_ms:+.1f}%, "
                f"from {cost.runs_discarded} spans-discarded runs measured the same way); exporting them "
                f"over OTLP the rest, {export:+.2f} ms ({100 * export / cost.off_cpu_ms:+.1f}%).",
                "",
            ]
    return lines


def _levers(result: LeverResult) -> list[str]:
    rows = []
    for r in result.runs:
        lever = r.lever
        if r.run is None:
            rows.append([lever.name, lever.change, r.why, *["–"] * 11])
            continue
        ours, floor, rnd = r.ours, r.floor, r.run.round
        full, young = r.gc_pauses_ms(full=True), r.gc_pauses_ms(full=False)
        seen = sum(1 for s in rnd.samples if s.latency_s is not None)
        rows.append(
            [
                f"**{lever.name}**" if lever.name == SHIPPED else lever.name,
                lever.change,
                f"{seen}/{rnd.calls}, {len(rnd.dropped)} dropped",
                *(fmt_ms(p(ours, w)) for w in ("p50", "p99", "max")),
                fmt_ms(p(floor, "p50")),
                fmt_ms(p(floor, "p99")),
                f"{r.run.cpu_ms_per_call:.2f}",
                f"{len(full)}, max {max(full):.0f} ms" if full else "0",
                f"{max(young):.1f} ms" if young else "–",
                f"{r.run.peak_kb_per_call:.0f}",
                f"{r.garbage / r.run.calls:.0f} ({r.collect_s * 1000:.0f} ms)",
                others(rnd.noise),
            ]
        )
    header = ["lever", "what changes", "POSTs seen", "ours p50", "p99", "max", "floor p50", "floor p99"]
    header += ["CPU ms/call", "full GCs in the round", "longest young GC", "peak RSS kB/call"]
    header += ["garbage left, objects/call (its collection)", "others' CPU"]
    return [
        f"## 7. Levers: the server runtime, at {result.calls} calls",
        "",
        f"Each row is one fresh app process playing the same round as section 2 ({result.calls} calls "
        "connected and chatting, actions spread over the window, the floor probed in the same "
        "window), with one thing changed from the shipped app (`agent/runtime.py`: uvloop, httptools, "
        f"GC policy `{SERVER_GC.name}` = freeze after start-up, thresholds {SERVER_GC.thresholds}, "
        "1 worker). `runtime as before` changes all three back (asyncio, h11, CPython's GC). The "
        "shipped app plays first (and last, in the full run): the gap between its two rows is the "
        "drift of the machine over the section.",
        "",
        "Ours = turn end → POST arrival (as in section 2); CPU per call as in section 5; GC pauses "
        "are the app's own (gc.callbacks); garbage left = what one full collection found in the app "
        "after the round's calls had ended (what a policy that defers full collections holds back), "
        "and how long that collection took.",
        "",
        *table(header, rows),
        "",
    ]


def _capacity(result: CapacityResult) -> list[str]:
    rows = []
    for step in result.steps:
        run = step.run
        if run is None:
            rows.append([str(step.calls), "**INVALID**", step.why, *["–"] * 8])
            continue
        rnd = run.round
        air, floor = step.dead_air, step.floor
        busy = 100.0 * rnd.app_cpu_s / rnd.wall_s if rnd.wall_s else 0.0
        rows.append(
            [
                str(step.calls),
                f"**{step.verdict}**",
                f"{air.n if air else 0}/{step.calls}, {step.lost} lost or early, {step.dropped} dropped",
                *(fmt_ms(p(air, w)) for w in ("p50", "p99", "max")),
                fmt_ms(p(floor, "p99")),
                f"{run.cpu_ms_per_call:.1f}",
                f"{busy:.0f}%",
                f"{rnd.generators}, lag p99 {fmt_ms(p(summarize(rnd.world_lag_s), 'p99'))}",
                others(rnd.noise),
            ]
        )
    header = ["calls", "verdict", "dead air measured", "dead air p50", "p99", "max", "floor p99"]
    header += ["app CPU ms/call", "app CPU (one core)", "generators (loop lag)", "others' CPU"]
    best = result.largest_passing
    return [
        "## 8. Capacity: concurrent calls per server process (one core), real LlmAgent path",
        "",
        "One fresh app process per level (the shipped runtime: one event loop, so at most one core), "
        "with Line's `LlmAgent` through LiteLLM against the scripted LLM (`lab/scripted_llm.py`). "
        f"Every call connects and hears the introduction; then, within {result.spread_s:g} s, it chats "
        "once when there is time and asks for an operator: the LLM calls `call_transfer`, whose "
        f"confirmation plays at {result.words_per_s:g} words/s. Dead air = end of the confirming speech "
        "→ the accepted POST at VoxEngine (`lab/action_timing.py`). Levels run in order until one "
        "fails; a level whose floor (a bare pooled POST from the app's process, same window) misses "
        "the target itself is INVALID. The harness, the emulator and the LLM run in generator "
        "processes of their own.",
        "",
        *table(header, rows),
        "",
        f"Largest passing level: **{best.calls if best else 'none'} concurrent calls** per process.",
        "",
    ]


def _chain(result: ChainResult) -> list[str]:
    held = sum(result.held(r) for r in result.guarded)
    return [
        "## 9. Hang-up chain: what the caller hears of the goodbye",
        "",
        "The cases of `python -m lab chain` (`lab/chain.py`), one offline call each through the real "
        f'app: the caller says goodbye, the agent says "{GOODBYE}" and calls `end_call`. The harness '
        "closes after Line's `end_call` not at all, immediately or after its queued speech; "
        "VoxEngine's media buffer plays the agent's audio a lag behind the harness; the scenario's "
        "playout guard is on (the default) or off. Cut = how much of the goodbye the caller never "
        "heard, silence = from its end to the hang-up, both measured on the buffer (which the real "
        "scenario cannot see); beside them the `playout_offset_ms` the scenario reported. The "
        '"before #17" rows play the agent and scenario as they were (Line\'s `end_call` at the tool '
        "call, any close of the agent's socket ending the call at once). The guard-off and "
        "before-#17 rows are information: the target judges the guarded ones.",
        "",
        render_table(result.rows),
        "",
        f"Guard on: **{held}/{len(result.guarded)}** calls hung up with nothing cut and at most "
        f"{result.guard_max_s:g} s of silence (`HANGUP_PLAYOUT_GUARD_MAX_S`).",
        "",
    ]


def _notes() -> list[str]:
    return [
        "## Notes",
        "",
        "- Percentiles interpolate linearly between ranks. With 100 samples p99 is close to the "
        "maximum; read it with the sample count.",
        "- Both processes stamp with `time.perf_counter()` (CLOCK_MONOTONIC on Linux, shared across "
        "processes), so harness, app and emulator timestamps compare directly.",
        "- Everything listens and connects on 127.0.0.1 only.",
        "- Section 1 takes the confirming turn as the first agent turn after the caller's request; "
        "Line reports a tool call only when the tool returns (after the published agent's sleep), so "
        "the report's own timeline never anchors on that event.",
        '- "Others\' CPU": the share of all cores used during the window by processes other than the '
        "benchmark's (from /proc/stat, minus our processes' CPU time). The machine is shared; when "
        "others take a core, our tails grow, and the side-by-side ratios are the numbers to compare.",
        "",
    ]
