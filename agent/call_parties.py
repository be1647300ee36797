"""Who is calling whom: the caller and callee of a call, from its start message.

Three spellings reach the agent:
- the start message's top-level `from` / `to`, which Line parses into `CallRequest.from_` / `to`
  (line/_harness_types.py `StartInput`: "unknown" when absent);
- metadata `from` / `to`: what Cartesia's Calls API reads from the start event (it defaults them
  to "websocket" and the agent id; cartesia-ai/docs fern/agents/integrations/web-calls.mdx) and
  what Voximplant's published scenario sends;
- metadata `caller` / `callee`: what our scenario sent before it switched to `from` / `to`.

Precedence: the top-level value first, because it is what Cartesia resolved for the call and
shows in its call log, so the agent and Cartesia agree; but not when it is a placeholder (Line's
"unknown", Cartesia's defaults "websocket" and the agent id), which says nothing about the phone
call. Then metadata `from` / `to` (the documented spelling), then `caller` / `callee` (an older
scenario still deployed in VoxEngine). With none of them, the top-level placeholder stays.
"""

from __future__ import annotations

from collections.abc import Mapping

from line.voice_agent_app import CallRequest

_LINE_DEFAULT = "unknown"  # line/_harness_types.py StartInput: from_ and to
_CARTESIA_FROM_DEFAULT = "websocket"  # Cartesia's Calls API, `from` when the start event has none


def call_parties(call: CallRequest) -> tuple[str, str]:
    """(caller, callee) of `call` (see the module doc for the order)."""
    metadata: Mapping[str, object] = call.metadata if isinstance(call.metadata, dict) else {}
    placeholders_from = {_LINE_DEFAULT, _CARTESIA_FROM_DEFAULT, ""}
    placeholders_to = {_LINE_DEFAULT, "", *([call.agent.id] if call.agent.id else [])}
    caller = _first(call.from_, placeholders_from, metadata, ("from", "caller"))
    callee = _first(call.to, placeholders_to, metadata, ("to", "callee"))
    return caller, callee


def _first(top: str, placeholders: set[str], metadata: Mapping[str, object], keys: tuple[str, ...]) -> str:
    if top.strip() not in placeholders:
        return top
    for key in keys:
        value = metadata.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return top
