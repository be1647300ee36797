"""An LLM-free agent for load, fault and hardening runs: our real telephony tools, chosen by
keywords in what the caller says.

LiteLLM costs tens of milliseconds of CPU per completion and has nothing to do with the control
plane's path (harness idle → Line → flush → POST), so runs that measure or stress that path use
this agent instead. It calls the real `end_call` / `call_transfer` tool functions from
`agent.tools.telephony_tools` and reports each tool call as `LlmAgent` would.
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
    CallStarted,
    InputEvent,
    OutputEvent,
    UserTextSent,
    UserTurnEnded,
)
from line.llm_agent import ToolEnv

from agent.app import AgentFactory
from agent.call_control import CallControl
from agent.settings import Settings
from agent.tools import telephony_tools

TRANSFER_WORD = "operator"
GOODBYE_WORD = "goodbye"

_tool_ids = itertools.count(1)


class KeywordAgent:
    """Says `introduction` (if any) at call start; on each caller turn transfers when they say
    `TRANSFER_WORD`, says `goodbye` (if any) and hangs up on `GOODBYE_WORD`, else says `chat_reply`."""

    def __init__(
        self,
        control: CallControl,
        *,
        chat_reply: str,
        introduction: str | None = None,
        goodbye: str | None = None,
        closing_line: str | None = None,
    ) -> None:
        self._tools = {tool.name: tool for tool in telephony_tools(control, closing_line=closing_line)}
        self._chat_reply = chat_reply
        self._introduction = introduction
        self._goodbye = goodbye

    async def process(self, env: TurnEnv, event: InputEvent) -> AsyncIterator[OutputEvent]:
        if isinstance(event, CallStarted) and self._introduction:
            yield AgentSendText(text=self._introduction)
        if not isinstance(event, UserTurnEnded):
            return
        said = " ".join(c.content for c in event.content if isinstance(c, UserTextSent)).casefold()
        if TRANSFER_WORD in said:
            async for output in self._run_tool(env, "call_transfer", {"summary": said[:200]}):
                yield output
        elif GOODBYE_WORD in said:
            if self._goodbye:
                yield AgentSendText(text=self._goodbye)
            async for output in self._run_tool(env, "end_call", {}):
                yield output
        else:
            yield AgentSendText(text=self._chat_reply)

    async def _run_tool(self, env: TurnEnv, name: str, args: dict[str, Any]) -> AsyncIterator[OutputEvent]:
        call_id = f"keyword_tool_{next(_tool_ids)}"
        yield AgentToolCalled(tool_call_id=call_id, tool_name=name, tool_args=args)
        async for output in self._tools[name].func(ToolEnv(turn_env=env), **args):
            yield output
        yield AgentToolReturned(tool_call_id=call_id, tool_name=name, tool_args=args, result="ok")


def keyword_agent_factory(**options: Any) -> AgentFactory:
    """An `AgentFactory` for `TelephonyAgentApp` / `CallLab` building a `KeywordAgent(**options)`."""

    def build(settings: Settings, control: CallControl) -> KeywordAgent:
        return KeywordAgent(control, **options)

    return build
