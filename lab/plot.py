"""A picture of one call (`./dev simulate --plot FILE.png`): who spoke when, when the harness
ended each agent turn, and each control action from enqueue to acceptance against the end of the
speech that confirmed it. The left panel is the whole call in seconds; the right one zooms on the
first action, in milliseconds from the end of its confirming speech. (bench/plots.py is not a
twin: it draws distributions over a benchmark run's many calls.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.action_timing import ActionTiming, action_of
from lab.results import CallResult

AGENT, CALLER, CONTROL = 2.0, 1.0, 0.0
_MARKS = {  # action record name -> (marker, colour, label)
    "enqueued": ("o", "#555555", "enqueued"),
    "released": ("s", "#1f77b4", "released"),
    "delivered": ("*", "#2ca02c", "accepted by VoxEngine"),
    "failed": ("X", "#d62728", "failed"),
    "session_ended": ("P", "#9467bd", "session ended"),
    "cancelled": ("x", "#7f7f7f", "cancelled"),
    "telephony.ringing": ("d", "#bcbd22", "target ringing"),
    "telephony.connected": ("h", "#17becf", "caller bridged"),
    "telephony.failed": ("v", "#e377c2", "transfer failed on the phone"),
}
ZOOM_S = 0.25  # the zoom shows the speech end ± this, widened to hold the action's POSTs

Scale = Callable[[float], float]


def _short(text: str, limit: int = 36) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plot_call(result: CallResult, path: Path, *, title: str | None = None) -> Path:
    """Draw `result` into `path` (PNG); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = result.timeline.events
    origin = events[0].at if events else 0.0
    timings = [result.timing(a) for a in sorted({action_of(r) for r in result.requests})]
    focus = next((t for t in timings if t.speech_end is not None), None)
    fig, axes = plt.subplots(
        1, 2 if focus else 1, figsize=(15, 4.4), gridspec_kw={"width_ratios": [3, 1.3]} if focus else None
    )
    main = axes[0] if focus else axes
    _draw(main, result, lambda at: at - origin, labels=True)
    for timing in timings:
        _offset(main, timing, lambda at: at - origin, text=False)
    main.set_xlabel("seconds from the call's start")
    main.set_title(title or f"{result.scenario} · {result.policy}", fontsize=10)
    handles, names = main.get_legend_handles_labels()
    if focus is not None and focus.speech_end is not None:
        zoom = axes[1]
        end = focus.speech_end

        def ms(at: float) -> float:
            return (at - end) * 1000

        _draw(zoom, result, ms, labels=False)
        _offset(zoom, focus, ms, text=True)
        posts = [ms(r.time) for r in result.requests if action_of(r) == focus.action]
        right = max([ZOOM_S * 1000, *(p + 60 for p in posts)])
        left = min([-ZOOM_S * 1000, *(p - 60 for p in posts)])
        zoom.set_xlim(left, right)
        zoom.set_xlabel(f"ms from the end of the {focus.action} confirmation")
        zoom.set_title("the action, against its confirmation", fontsize=10)
        zoom.set_yticks([])
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _draw(ax: Any, result: CallResult, x: Scale, *, labels: bool) -> None:
    for turn in result.timeline.turns():
        end = turn.stopped_at if turn.stopped_at is not None else turn.started_at
        colour = "#ff7f0e" if turn.interrupted else "#1f77b4"
        ax.broken_barh(
            [(x(turn.started_at), x(end) - x(turn.started_at))], (AGENT - 0.2, 0.4), color=colour, alpha=0.6
        )
        if labels:
            ax.text(x(turn.started_at), AGENT + 0.27, f"{turn.index}: {_short(turn.text)}", fontsize=7)
        if turn.ended_at is not None:  # the harness's idle: the app's AgentTurnEnded
            ax.plot([x(turn.ended_at)] * 2, [AGENT - 0.32, AGENT + 0.32], color="black", linewidth=1.2)
    for start in result.timeline.of_kind("user_turn_started"):
        stop = result.timeline.first("user_turn_ended", since=start.at)
        width = max(x(stop.at) - x(start.at) if stop else 0.0, (x(start.at + 0.12) - x(start.at)))
        ax.broken_barh([(x(start.at), width)], (CALLER - 0.2, 0.4), color="#2ca02c", alpha=0.6)
        if labels:
            ax.text(x(start.at), CALLER + 0.27, _short(str(start.detail.get("text", ""))), fontsize=7)
    ax.plot([], [], color="black", linewidth=1.2, label="harness idle (turn end)")
    shown: set[str] = set()
    for record in result.actions:
        if record.name in _MARKS:
            marker, colour, label = _MARKS[record.name]
            ax.scatter([x(record.at)], [CONTROL + 0.18], marker=marker, color=colour, s=60, zorder=3,
                       label=None if label in shown else label)  # fmt: skip
            shown.add(label)
    for request in result.requests:
        ok = request.response is not None and request.response.get("ok") is True
        label = "POST accepted" if ok else "POST failed"
        ax.scatter([x(request.time)], [CONTROL - 0.12], marker="^", s=45, zorder=3,
                   color="#2ca02c" if ok else "#d62728", label=None if label in shown else label)  # fmt: skip
        shown.add(label)
    ax.set_yticks([CONTROL, CALLER, AGENT], ["control", "caller", "agent"])
    ax.set_ylim(-0.7, 2.75)
    ax.grid(axis="x", alpha=0.3)


def _offset(ax: Any, timing: ActionTiming, x: Scale, *, text: bool) -> None:
    """An arrow from the end of the confirming speech to the action's (accepted) POST."""
    at = timing.accepted_at if timing.accepted_at is not None else timing.first_post_at
    if timing.speech_end is None or at is None or timing.offset_s is None:
        return
    colour = "#d62728" if timing.early else "#2ca02c"
    ax.axvline(x(timing.speech_end), color="#999999", linestyle=":", linewidth=1)
    ax.annotate(
        "", xy=(x(at), CONTROL - 0.42), xytext=(x(timing.speech_end), CONTROL - 0.42),
        arrowprops={"arrowstyle": "->", "color": colour},
    )  # fmt: skip
    if text:
        verdict = "BEFORE the speech ended (cut off)" if timing.early else "after the speech ended"
        ax.text(
            x(timing.speech_end), CONTROL - 0.6, f"{timing.offset_s * 1000:+.0f} ms {verdict}",
            fontsize=8, color=colour,
        )  # fmt: skip
