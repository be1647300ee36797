"""Caller and callee from the start message: top-level `from`/`to` unless a placeholder, then
metadata `from`/`to` (Cartesia's Calls API, Voximplant's published scenario), then
`caller`/`callee` (our scenario before it switched)."""

from __future__ import annotations

from typing import Any

import pytest
from line.voice_agent_app import _call_request_from_start_data

from agent.call_parties import call_parties
from lab.harness import start_message

NEW = {"from": "+15550001", "to": "+15550002"}  # as Cartesia's Calls API reads them
OLD = {"caller": "+15559991", "callee": "+15559992"}  # as our scenario used to send them


def parties(top: tuple[str, str], metadata: dict[str, Any]) -> tuple[str, str]:
    start = start_message(from_=top[0], to=top[1], agent_id="agent-7", metadata=metadata)
    return call_parties(_call_request_from_start_data(start))  # as Line parses it


def test_real_top_level_values_win() -> None:
    assert parties(("+15551111", "+15552222"), {**NEW, **OLD}) == ("+15551111", "+15552222")


@pytest.mark.parametrize("top", [("unknown", "unknown"), ("websocket", "agent-7")])
def test_placeholders_give_way_to_metadata_from_and_to_before_caller_and_callee(top: tuple[str, str]) -> None:
    assert parties(top, {**NEW, **OLD}) == ("+15550001", "+15550002")


def test_the_old_caller_callee_spelling_still_works() -> None:
    assert parties(("websocket", "agent-7"), OLD) == ("+15559991", "+15559992")


def test_unusable_metadata_leaves_the_top_level_value() -> None:
    assert parties(("websocket", "agent-7"), {"from": 15550001, "to": "  "}) == ("websocket", "agent-7")
    assert parties(("unknown", "unknown"), {}) == ("unknown", "unknown")
