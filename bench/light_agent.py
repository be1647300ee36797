"""An LLM-free agent for the load sections: our real telephony tools, driven by the caller's words.

LiteLLM costs tens of milliseconds of CPU per completion and has nothing to do with the path
being measured (harness `agent_state: idle` → Line → the control plane → the POST), so the
overhead, resource and fault sections replace the LLM with this agent. On each caller turn it
either chats (a fixed sentence, so calls carry realistic speech traffic) or, when the caller says
`TRANSFER_WORD` / `GOODBYE_WORD`, calls our real `call_transfer` / `end_call` tool functions from
`agent.tools.telephony_tools(control)`, reporting the tool call as `LlmAgent` would.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

from line.agent import TurnEnv
from line.events import (
    AgentSendText,
    AgentToolCalled,
    AgentToolReturned,
    InputEvent,
    OutputEvent,
    UserTextSent,
    UserTurnEnded,
)
from line.llm_agent import ToolEnv

from agent.call_control import CallControl
from agent.settings import Settings
from agent.tools import telephony_tools

TRANSFER_WORD = "operator"
GOODBYE_WORD = "goodbye"
CHAT_REPLY = "Let me look into that for you, it will only take a moment while I check the details."
GOODBYE_TEXT = "Thanks for calling, have a great day. Goodbye!"

_ids = itertools.count(1)


class ToolDrivenAgent:
    """Answers each caller turn with a chat sentence or one of our telephony tools."""

    def __init__(self, control: CallControl) -> None:
        self._tools = {tool.name: tool for tool in telephony_tools(control)}

    async def process(self, env: TurnEnv, event: InputEvent) -> AsyncIterator[OutputEvent]:
        if not isinstance(event, UserTurnEnded):
            return
        said = " ".join(c.content for c in event.content if isinstance(c, UserTextSent)).casefold()
        if TRANSFER_WORD in said:
            async for output in self._run_tool(
                env, "call_transfer", {"summary": "Caller asked for a person."}
            ):
                yield output
        elif GOODBYE_WORD in said:
            yield AgentSendText(text=GOODBYE_TEXT)
            async for output in self._run_tool(env, "end_call", {}):
                yield output
        else:
            yield AgentSendText(text=CHAT_REPLY)

    async def _run_tool(self, env: TurnEnv, name: str, args: dict[str, Any]) -> AsyncIterator[OutputEvent]:
        call_id = f"bench_tool_{next(_ids)}"
        yield AgentToolCalled(tool_call_id=call_id, tool_name=name, tool_args=args)
        async for output in self._tools[name].func(ToolEnv(turn_env=env), **args):
            yield output
        yield AgentToolReturned(tool_call_id=call_id, tool_name=name, tool_args=args, result="ok")


def build_tool_driven_agent(settings: Settings, control: CallControl) -> ToolDrivenAgent:
    """`TelephonyAgentApp(agent_factory=...)` for the LLM-free agent."""
    return ToolDrivenAgent(control)
