"""Recordings keep every frame with its time, and never the control URL's secret path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.call_recording import CallRecording, write_recording
from agent.settings import Settings, SettingsError

URL = "https://www-us-35-230.voximplant.com:12093/request/5014DA08C37601ED.1771267099.4_1.2.3.4/FD8FE1FAD3DB5EFA"


def test_frames_are_kept_in_order_with_their_offsets_and_the_url_redacted(tmp_path: Path) -> None:
    clock = iter([0.0, 0.010, 1.5, 2.25])
    recording = CallRecording(clock=lambda: next(clock))
    start = {"type": "start", "call_id": "c/1", "metadata": {"vox_session_control_url": URL, "caller": "+1"}}
    recording.add("in", start)
    recording.add("out", {"type": "message", "content": "Hi"})
    recording.add("in", {"type": "agent_state", "value": "speaking"})
    path = recording.write(tmp_path)
    again = recording.write(tmp_path)
    assert path.name == "c_1.jsonl" and again.name == "c_1-2.jsonl"  # a safe name, never overwritten
    header, *frames = (json.loads(line) for line in path.read_text().splitlines())
    assert header["call_id"] == "c/1" and header["format"] == "vox-line-agent/recording"
    assert [(f["ms"], f["dir"]) for f in frames] == [(10.0, "in"), (1500.0, "out"), (2250.0, "in")]
    metadata = frames[0]["msg"]["metadata"]
    assert metadata == {
        "vox_session_control_url": "https://www-us-35-230.voximplant.com:12093/REDACTED",
        "caller": "+1",
    }
    assert "FD8FE1FAD3DB5EFA" not in path.read_text()


def test_a_recording_that_cannot_be_written_never_breaks_the_call(tmp_path: Path) -> None:
    recording = CallRecording()
    recording.add("in", {"type": "start", "call_id": "c2"})
    write_recording(recording, tmp_path / "missing")  # logs, does not raise


def test_the_record_dir_must_be_a_writable_directory(tmp_path: Path) -> None:
    key = {"OPENAI_API_KEY": "k"}
    assert Settings.from_env({**key, "VOX_RECORD_DIR": str(tmp_path)}).record_dir == tmp_path
    assert Settings.from_env(key).record_dir is None
    with pytest.raises(SettingsError, match=r"^VOX_RECORD_DIR"):
        Settings.from_env({**key, "VOX_RECORD_DIR": str(tmp_path / "nope")})
