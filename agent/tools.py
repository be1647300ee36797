"""The telephony tools: they speak, hold a control action, and return. They never sleep and
never wait for VoxEngine; `agent/call_control.py` delivers the action when the confirming turn
ends (`agent/flush_policy.py`).

Adding a third action: an `ActionKind` in `agent/actions.py` and a tool here that calls
`_confirmation`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from line.events import AgentSendText, OutputEvent
from line.llm_agent import FunctionTool, ToolEnv, loopback_tool

from agent import prompt
from agent.actions import CALL_TRANSFER, END_CALL
from agent.call_control import CallControl, RequestResult

MAX_SUMMARY_CHARS = 2000  # the contract's limit (docs/control-contract.md)
SUMMARY_HELP = "One or two sentences for the human colleague: who is calling and what they need"


def _confirmation(result: RequestResult, speech: str | None) -> AgentSendText | None:
    """What a telephony tool says for a request, the same for every action kind.

    The action is already held when this is spoken, so a barge-in that cancels the turn at the
    yield cannot lose it. A repeated request says nothing: the first one was confirmed.
    """
    if result.status == "unavailable":
        return AgentSendText(text=prompt.UNAVAILABLE)
    if result.status == "accepted" and speech:
        return AgentSendText(text=speech)
    return None


def telephony_tools(control: CallControl, *, closing_line: str | None = None) -> list[FunctionTool]:
    """`end_call` and `call_transfer`, bound to one call's control plane."""

    async def end_call(ctx: ToolEnv) -> AsyncIterator[OutputEvent]:
        """Hang up the call. Use only after you have said goodbye in this reply and the caller
        has nothing else they need."""
        result = control.request(END_CALL)
        if said := _confirmation(result, closing_line):
            yield said
        # No AgentEndCall here: Line would send `end_call` to the harness at once, and Cartesia
        # then closes VoxEngine's socket while the goodbye may still be playing there. The
        # control plane ends the agent's side once VoxEngine hung up (agent/call_control.py).

    async def call_transfer(
        ctx: ToolEnv,
        summary: Annotated[
            str, "One or two sentences for the human colleague: who is calling and what they need"
        ] = "",
    ) -> AsyncIterator[OutputEvent]:
        """Transfer the caller to a human colleague. Do not speak before calling this; it tells
        the caller they are being connected."""
        text = summary if isinstance(summary, str) else ""
        result = control.request(CALL_TRANSFER, summary=text[:MAX_SUMMARY_CHARS])
        if said := _confirmation(result, prompt.TRANSFER_CONFIRMATION):
            yield said

    return [loopback_tool(end_call), loopback_tool(call_transfer)]
