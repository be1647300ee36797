"""`python -m bench [--quick] [--out DIR]`: run the benchmark, print the Markdown report, and
write it (report.md) with its PNG plots to a results folder. Progress goes to stderr."""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import anyio

from bench.alignment import run_alignment
from bench.capacity import run_capacity
from bench.chain import run_chain
from bench.config import CONFIGS, FULL, QUICK, BenchConfig
from bench.corpus import make_corpus
from bench.faults import run_faults
from bench.lab_tracing import run_lab_tracing
from bench.levers import run_levers
from bench.machine import describe_machine, load_average
from bench.overhead import run_overhead
from bench.progress import Progress, quiet_logs
from bench.report import render
from bench.results import BenchRun
from bench.tls_warm import run_tls

SECTIONS = ("alignment", "overhead", "tls", "faults", "lab-tracing", "levers", "capacity", "chain")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="every section, smaller (5.5 min measured on 2 cores; default: the full run)",
    )
    size.add_argument("--profile", choices=sorted(CONFIGS), help="full, quick, or smoke (seconds; for tests)")
    p.add_argument("--out", type=Path, help="results folder (default: results/bench-<timestamp>/)")
    p.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="run only these sections (repeatable); section 5 (resources) comes with overhead",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def run_bench(config: BenchConfig, sections: Sequence[str], out: Path, progress: Progress) -> BenchRun:
    from bench import plots, raw  # matplotlib: imported only when there is something to draw

    started = datetime.datetime.now().astimezone()
    clock = time.perf_counter()
    machine = describe_machine()
    progress.say(
        "bench", f"{config.name} run on {machine.cores} cores ({machine.cpu_model}); results in {out}"
    )
    alignment = overhead = tls = faults = lab_tracing = levers = capacity = chain = None
    pictures: dict[str, str] = {}
    if "alignment" in sections:
        corpus = make_corpus(
            config.alignment_calls, seed=config.seed, max_speech_s=config.alignment_max_speech_s
        )
        alignment = run_alignment(
            corpus,
            concurrency=config.alignment_concurrency,
            warmup=config.alignment_warmup,
            progress=progress,
        )
        pictures["alignment"] = plots.alignment_plot(alignment.outcomes, out / "alignment.png").name
        raw.write_alignment(alignment, out)
    if "overhead" in sections:
        overhead = anyio.run(run_overhead, config, progress)
        pictures["overhead"] = plots.overhead_plot(overhead.levels, out / "overhead.png").name
        raw.write_overhead(overhead, out)
    if "tls" in sections:
        tls = anyio.run(run_tls, config.tls_samples, progress)
    if "faults" in sections:
        faults = anyio.run(run_faults, config, progress)
        pictures["faults"] = plots.faults_plot(faults, out / "faults.png").name
        raw.write_faults(faults, out)
    if "lab-tracing" in sections:
        lab_tracing = anyio.run(run_lab_tracing, config, progress)
    if "levers" in sections:
        levers = anyio.run(run_levers, config, progress)
    if "capacity" in sections:
        capacity = anyio.run(run_capacity, config, progress)
    if "chain" in sections:
        chain = anyio.run(run_chain, config, progress)
    return BenchRun(
        config=config,
        machine=machine,
        started_at=started.isoformat(timespec="seconds"),
        duration_s=time.perf_counter() - clock,
        alignment=alignment,
        overhead=overhead,
        tls=tls,
        faults=faults,
        lab_tracing=lab_tracing,
        levers=levers,
        capacity=capacity,
        chain=chain,
        plots=pictures,
        load_at_end=load_average(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = CONFIGS[args.profile] if args.profile else (QUICK if args.quick else FULL)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out: Path = args.out or Path("results") / f"bench-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    quiet_logs()
    progress = Progress(quiet=args.quiet)
    run = run_bench(config, args.only or SECTIONS, out, progress)
    text = render(run)
    (out / "report.md").write_text(text, encoding="utf-8")
    print(text, flush=True)
    progress.say("bench", f"done in {run.duration_s / 60:.1f} min; report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
