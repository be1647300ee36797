"""Configuration from the environment, read once and validated up front."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.flush_policy import FlushTimings
from agent.retry_policy import RetryPolicy

DEFAULT_MODEL = "gpt-5-nano"


class SettingsError(ValueError):
    """An environment variable has a value we cannot use."""


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    llm_model: str = DEFAULT_MODEL
    llm_api_key: str | None = field(default=None, repr=False)
    llm_api_base: str | None = None
    allow_local_control: bool = False
    control_secret: str | None = field(default=None, repr=False)
    timings: FlushTimings = field(default_factory=FlushTimings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    drain_timeout_s: float = 12.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read `LLM_*`, the provider's API key and `VOX_CONTROL_*` variables."""
        env = os.environ if env is None else env
        model = env.get("LLM_MODEL", "").strip() or DEFAULT_MODEL
        provider = model.split("/", 1)[0] if "/" in model else "openai"
        # LLM_API_KEY wins; otherwise the provider's own variable (OPENAI_API_KEY, ANTHROPIC_API_KEY...).
        api_key = env.get("LLM_API_KEY") or env.get(f"{provider.upper()}_API_KEY") or None
        retry = RetryPolicy(
            deadline_s=_float(env, "VOX_CONTROL_DEADLINE_S", RetryPolicy.deadline_s),
            attempt_timeout_s=_float(env, "VOX_CONTROL_ATTEMPT_TIMEOUT_S", RetryPolicy.attempt_timeout_s),
        )
        timings = FlushTimings(
            no_speech_s=_float(env, "VOX_FLUSH_NO_SPEECH_S", FlushTimings.no_speech_s),
            max_hold_s=_float(env, "VOX_FLUSH_MAX_HOLD_S", FlushTimings.max_hold_s),
        )
        return cls(
            llm_model=model,
            llm_api_key=api_key,
            llm_api_base=env.get("LLM_API_BASE", "").strip() or None,
            allow_local_control=_flag(env, "VOX_CONTROL_ALLOW_LOCAL"),
            control_secret=env.get("VOX_CONTROL_SECRET") or None,
            timings=timings,
            retry=retry,
            drain_timeout_s=_float(env, "VOX_DRAIN_TIMEOUT_S", retry.deadline_s + 2.0),
        )
