"""The telephony tools: they speak, hold a control action, and return. They never sleep and
never wait for VoxEngine; `agent/call_control.py` delivers the action when the confirming turn
ends (`agent/flush_policy.py`).

Adding a third action: an `ActionKind` in `agent/actions.py` and a tool here that calls
`_confirmation`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any, Literal

from line.events import AgentSendText, OutputEvent
from line.llm_agent import FunctionTool, ToolEnv, loopback_tool
from line.llm_agent.tools.utils import ParameterInfo
from loguru import logger

from agent import prompt
from agent.actions import CALL_TRANSFER, END_CALL
from agent.call_control import CallControl, RequestResult
from agent.destinations import Destination

MAX_SUMMARY_CHARS = 2000  # the contract's limit (docs/control-contract.md)
SUMMARY_HELP = "One or two sentences for the human colleague: who is calling and what they need"


def _confirmation(result: RequestResult, speech: str | None) -> AgentSendText | None:
    """What a telephony tool says for a request, the same for every action kind.

    The action is already held when this is spoken, so a barge-in that cancels the turn at the
    yield cannot lose it. A repeated request says nothing: the first one was confirmed.
    """
    if result.status == "unavailable":
        return AgentSendText(text=prompt.UNAVAILABLE)
    if result.status == "held" and speech:
        return AgentSendText(text=speech)
    return None


def _destination_parameter(destinations: Sequence[Destination]) -> ParameterInfo:
    """`destination` as the LLM sees it: one of the configured names (an enum), with their
    descriptions, so it never has to guess a name."""
    names = tuple(d.name for d in destinations)
    described = "; ".join(f"{d.name}: {d.description}" if d.description else d.name for d in destinations)
    return ParameterInfo(
        name="destination",
        type_annotation=Literal[names],  # type: ignore[valid-type]  # the names are configuration
        description=f"Who to transfer the caller to, one of: {described}",
        required=True,
    )


def telephony_tools(
    control: CallControl, *, closing_line: str | None = None, destinations: Sequence[Destination] = ()
) -> list[FunctionTool]:
    """`end_call` and `call_transfer`, bound to one call's control plane. With `destinations`,
    `call_transfer` takes one of their names (`VOX_TRANSFER_DESTINATIONS`); any other is refused
    before anything is sent."""
    allowed = frozenset(d.name for d in destinations)

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
        destination: Any = None,
    ) -> AsyncIterator[OutputEvent]:
        """Transfer the caller to a human colleague. Do not speak before calling this; it tells
        the caller they are being connected."""
        text = summary if isinstance(summary, str) else ""
        params = {"summary": text[:MAX_SUMMARY_CHARS]}
        if allowed and destination is not None:
            if destination not in allowed:
                # Never the value itself in the log: it is whatever the LLM wrote.
                logger.warning("call_transfer refused: not a destination of VOX_TRANSFER_DESTINATIONS")
                yield AgentSendText(text=prompt.UNAVAILABLE)
                return
            params["destination"] = destination
        result = control.request(CALL_TRANSFER, **params)
        if said := _confirmation(result, prompt.TRANSFER_CONFIRMATION):
            yield said

    transfer = loopback_tool(call_transfer)
    if allowed:
        transfer.parameters["destination"] = _destination_parameter(destinations)
    else:
        del transfer.parameters["destination"]  # no names configured: today's tool
    return [loopback_tool(end_call), transfer]
