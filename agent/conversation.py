"""The conversational agent: Line's `LlmAgent` with our prompt and telephony tools, told when a
telephony action did not happen as the caller was told it would.

VoxEngine reports a failed transfer (the last destination of its chain busy, unanswered, or a
voicemail) as a custom event (agent/telephony_outcomes.py); the app's run
filter starts the agent on it (agent/app.py), and `TelephonyLlmAgent` answers with the setback in
the LLM's context, so the caller, still on the line, hears an honest next step. A transfer that
VoxEngine never accepted is told on the caller's next turn the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from line.agent import TurnEnv
from line.events import InputEvent, OutputEvent, UserCustomSent
from line.llm_agent import LlmAgent, LlmConfig, send_dtmf

from agent import prompt
from agent.call_control import CallControl
from agent.settings import Settings
from agent.tools import telephony_tools


def _llm_options(settings: Settings, tools: list[Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {"api_base": settings.llm_api_base} if settings.llm_api_base else {}
    # A local OpenAI-compatible endpoint rarely needs a key, but LlmAgent insists on one.
    api_key = settings.llm_api_key or ("unused" if settings.llm_api_base else None)
    if not api_key:
        raise RuntimeError(
            f"No API key for {settings.llm_model}: set OPENAI_API_KEY (or the provider's key, or "
            "LLM_API_KEY), or point LLM_API_BASE at an OpenAI-compatible endpoint"
        )
    config = LlmConfig(system_prompt=prompt.SYSTEM_PROMPT, introduction=prompt.INTRODUCTION, extra=extra)
    return {"model": settings.llm_model, "api_key": api_key, "tools": tools, "config": config}


def llm_agent_with(settings: Settings, tools: list[Any]) -> LlmAgent:
    """Line's `LlmAgent` with our prompt, configured from `settings`, using `tools`."""
    return LlmAgent(**_llm_options(settings, tools))


class TelephonyLlmAgent(LlmAgent):  # type: ignore[misc]  # line ships no type stubs
    """`LlmAgent` that hears the setbacks of its telephony actions (`CallControl.take_setbacks`)."""

    def __init__(self, control: CallControl, **options: Any) -> None:
        super().__init__(**options)
        self._control = control

    async def process(self, env: TurnEnv, event: InputEvent, **kwargs: Any) -> AsyncIterator[OutputEvent]:
        setbacks = self._control.take_setbacks()
        if isinstance(event, UserCustomSent) and not setbacks:
            return  # the run filter starts us on a custom event only for a setback
        if setbacks:
            kwargs["context"] = prompt.setbacks_context(setbacks)
        async for output in super().process(env, event, **kwargs):
            yield output


def build_llm_agent(settings: Settings, control: CallControl) -> LlmAgent:
    """The conversational agent: our prompt, the two telephony tools bound to this call (the
    transfer to `settings.destinations`), and Line's `send_dtmf` for keys on the phone (Line
    sends the harness a `dtmf` frame; VoxEngine plays it on the right leg)."""
    tools = [*telephony_tools(control, destinations=settings.destinations), send_dtmf]
    return TelephonyLlmAgent(control, **_llm_options(settings, tools))
