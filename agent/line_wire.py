"""The Line websocket frames the agent writes itself, imported here and only here.

Line (cartesia-line) defines its wire messages in `line._harness_types`, a private module: its
public API is the events (`line.events`), which `ConversationRunner` turns into frames for what
an agent yields in a turn. The agent writes three frames outside any turn, where nothing can be
yielded: `end_call`, ending its own side when a hang-up cannot be delivered (`agent.app`), and
the call log's `log_event` / `log_metric` (`agent.call_log`); and it reads one input frame of its
own making, `custom`, to start a turn no harness event starts (`agent.local_input`).

Checked against cartesia-line 0.2.19 (`CHECKED_AGAINST`): tests/unit/test_line_wire.py pins the
fields and `type` literals these frames rely on, so a Line release that changes them fails there,
not on a call. On an upgrade, run it and update `CHECKED_AGAINST`.
"""

from __future__ import annotations

from typing import Final

from line._harness_types import CustomInput, EndCallOutput, LogEventOutput, LogMetricOutput

CHECKED_AGAINST: Final = ("0.2.19",)  # cartesia-line versions whose wire shapes were checked

__all__ = ["CHECKED_AGAINST", "CustomInput", "EndCallOutput", "LogEventOutput", "LogMetricOutput"]
