"""The Line frames the agent writes itself (agent/line_wire.py) keep the shapes they were checked
against: a cartesia-line release that renames a field or a `type` literal fails here."""

from __future__ import annotations

import importlib.metadata

import pytest
from pydantic import BaseModel

from agent.line_wire import CustomInput, EndCallOutput, LogEventOutput, LogMetricOutput


@pytest.mark.parametrize(
    ("model", "frame_type", "fields"),
    [
        (EndCallOutput, "end_call", {"type", "reason", "responding_to", "interruptible"}),
        (LogEventOutput, "log_event", {"type", "event", "metadata", "responding_to"}),
        (LogMetricOutput, "log_metric", {"type", "name", "value", "responding_to"}),
        (CustomInput, "custom", {"type", "metadata", "event_id"}),  # read, not written (local_input)
    ],
)
def test_each_frame_has_the_fields_and_type_literal_we_rely_on(
    model: type[BaseModel], frame_type: str, fields: set[str]
) -> None:
    assert set(model.model_fields) == fields, importlib.metadata.version("cartesia-line")
    assert model.model_fields["type"].default == frame_type


def test_the_frames_serialize_as_the_harness_reads_them() -> None:
    # What agent/app.py and agent/call_log.py send, as JSON objects on the websocket.
    assert EndCallOutput(reason="agent_ended").model_dump() == {
        "type": "end_call",
        "reason": "agent_ended",
        "responding_to": None,
        "interruptible": True,
    }
    metadata = {"level": "info", "message": "call_transfer accepted by VoxEngine", "metadata": {}}
    assert LogEventOutput(event="vox_action", metadata=metadata).model_dump() == {
        "type": "log_event",
        "event": "vox_action",
        "metadata": metadata,
        "responding_to": None,
    }
    assert LogMetricOutput(name="vox_action_attempts", value=2).model_dump() == {
        "type": "log_metric",
        "name": "vox_action_attempts",
        "value": 2,
        "responding_to": None,
    }
