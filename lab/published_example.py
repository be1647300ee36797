"""Voximplant's published tool policy, replayed for comparison (`simulate --fixed-sleeps`).

The published example fires each telephony action after a fixed sleep inside the tool: the
transfer 5 s after the tool runs, the hang-up 3 s after `end_call`. Each POST is made once,
with a new HTTP client, a 3 s timeout, and any failure swallowed. Because the sleep is awaited
inside the agent's turn task, a barge-in or the harness closing the socket cancels it, and the
POST is never sent. This module reproduces that policy on the same scripted calls as ours, so
the two can be measured side by side. (Its POST bodies carry an id only because our emulator
speaks our contract; timing is what is being compared.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from line.events import AgentEndCall, AgentSendText, OutputEvent
from line.llm_agent import LlmAgent, ToolEnv, loopback_tool

from agent import prompt
from agent.actions import CALL_TRANSFER, END_CALL, ActionKind, ControlAction
from agent.call_control import CallControl
from agent.control_transport import ControlNetwork, make_control_client
from agent.conversation import llm_agent_with
from agent.settings import Settings

TRANSFER_DELAY_S = 5.0
HANGUP_DELAY_S = 3.0
POST_TIMEOUT_S = 3.0


async def _post_once(network: ControlNetwork, url: str, kind: ActionKind, **params: str) -> None:
    try:
        # A new client per POST, as published; ours only so it reaches the lab's control host by
        # name (the lab's pin and CA), as the published one reaches VoxEngine.
        async with make_control_client(network) as client:
            await client.post(url, json=ControlAction(kind, params).body(), timeout=POST_TIMEOUT_S)
    except Exception:
        pass  # as published: failures are swallowed


def build_published_agent(settings: Settings, control: CallControl) -> LlmAgent:
    """The published example's tools, on the same LLM and prompt as ours."""
    url = control.target.url if control.target is not None else ""
    network = settings.control

    async def end_call(ctx: ToolEnv) -> AsyncIterator[OutputEvent]:
        """Hang up the call after saying goodbye."""
        yield AgentEndCall()
        await anyio.sleep(HANGUP_DELAY_S)
        await _post_once(network, url, END_CALL)

    async def call_transfer(
        ctx: ToolEnv, summary: Annotated[str, "What the caller needs"] = ""
    ) -> AsyncIterator[OutputEvent]:
        """Transfer the caller to a human colleague."""
        yield AgentSendText(text=prompt.TRANSFER_CONFIRMATION)
        await anyio.sleep(TRANSFER_DELAY_S)
        await _post_once(network, url, CALL_TRANSFER, summary=summary)

    return llm_agent_with(settings, [loopback_tool(end_call), loopback_tool(call_transfer)])
