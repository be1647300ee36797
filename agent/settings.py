"""Configuration from the environment, read once and validated when the process starts.

Anything unusable (no LLM key, a malformed `VOX_*` value, a trust store that does not load)
raises `SettingsError` whose message is one line naming the variable; `main.py` prints it and
exits non-zero, so a misconfiguration never waits for the first call.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.call_limits import LimitTimings
from agent.control_transport import ControlNetwork, Pin, trust_store
from agent.control_url import DEFAULT_ALLOWED_HOSTS, host_allowed, is_dns_name
from agent.destinations import Destination, InvalidDestinations, parse_destinations
from agent.flush_policy import FlushTimings
from agent.retry_policy import RetryPolicy

DEFAULT_MODEL = "gpt-5-nano"
DEFAULT_PORT = 8000
MAX_WORKERS = 64
# AGENT_DRAIN_TIMEOUT_S: how long a SIGTERM lets live calls run on before they are closed. As LiveKit
# Agents' `drain_timeout` (30 min): a phone call is rarely longer. Kubernetes'
# terminationGracePeriodSeconds must exceed it (plus VOX_DRAIN_TIMEOUT_S and start-up slack).
DEFAULT_CALL_DRAIN_TIMEOUT_S = 1800.0
# AGENT_MAX_CALLS: concurrent calls one server process takes: two thirds of the 300 that passed dead
# air <= 50 ms p99 with the real LlmAgent path (bench/README.md, capacity run 2026-12-05).
DEFAULT_MAX_CALLS = 200
MAX_CALLS_LIMIT = 100_000
MIN_PATH_SECRET_LENGTH = 16
_URL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


class SettingsError(ValueError):
    """An environment variable has a value we cannot use (the message names it)."""


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 < value < float("inf"):
        raise SettingsError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def _optional_seconds(env: Mapping[str, str], name: str) -> float | None:
    """A positive number of seconds, or None (off) when unset."""
    return _float(env, name, 0.0) or None


def _limits(env: Mapping[str, str]) -> LimitTimings:
    prompt = _optional_seconds(env, "VOX_SILENCE_PROMPT_S")
    hangup = _optional_seconds(env, "VOX_SILENCE_HANGUP_S")
    max_call = _optional_seconds(env, "VOX_MAX_CALL_S")
    if prompt is not None and hangup is not None and hangup <= prompt:
        raise SettingsError(
            f"VOX_SILENCE_HANGUP_S ({hangup:g}) must be longer than VOX_SILENCE_PROMPT_S ({prompt:g}): "
            "the check-in comes first"
        )
    margin = LimitTimings.close_margin_s
    if max_call is not None and max_call <= 2 * margin:
        raise SettingsError(
            f"VOX_MAX_CALL_S ({max_call:g}) must be over {2 * margin:g} s: the polite close starts "
            f"{margin:g} s before it"
        )
    return LimitTimings(silence_prompt_s=prompt, silence_hangup_s=hangup, max_call_s=max_call)


def _destinations(env: Mapping[str, str]) -> tuple[Destination, ...]:
    try:
        return parse_destinations(env.get("VOX_TRANSFER_DESTINATIONS", ""))
    except InvalidDestinations as exc:
        raise SettingsError(
            f"VOX_TRANSFER_DESTINATIONS: {exc} (expected name[=description],... e.g. "
            "sales=New orders,billing)"
        ) from None


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw not in _TRUE + _FALSE:
        raise SettingsError(f"{name} must be 1 or 0 (true/false), got {raw!r}")
    return raw in _TRUE


def _port(env: Mapping[str, str], name: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SettingsError(f"{name}: {raw!r} is not a port (1-65535)")
    return int(raw)


def _workers(env: Mapping[str, str]) -> int:
    raw = env.get("WEB_CONCURRENCY", "").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_WORKERS:
        raise SettingsError(f"WEB_CONCURRENCY: {raw!r} is not a number of worker processes (1-{MAX_WORKERS})")
    return int(raw)


def _max_calls(env: Mapping[str, str]) -> int:
    raw = env.get("AGENT_MAX_CALLS", "").strip() or str(DEFAULT_MAX_CALLS)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_CALLS_LIMIT:
        raise SettingsError(
            f"AGENT_MAX_CALLS: {raw!r} is not a number of concurrent calls (1-{MAX_CALLS_LIMIT})"
        )
    return int(raw)


def _path_secret(env: Mapping[str, str]) -> str | None:
    raw = env.get("AGENT_PATH_SECRET", "").strip()
    if not raw:
        return None
    # The value itself is never echoed: an error message ends up in logs.
    if not set(raw) <= _URL_SAFE:
        raise SettingsError("AGENT_PATH_SECRET may hold only URL-safe characters (A-Z a-z 0-9 - _ . ~)")
    if len(raw) < MIN_PATH_SECRET_LENGTH:
        raise SettingsError(
            f"AGENT_PATH_SECRET is too short ({len(raw)} characters, at least {MIN_PATH_SECRET_LENGTH}; "
            "e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    return raw


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: assume it is reachable from elsewhere


def _allowed_hosts(env: Mapping[str, str]) -> tuple[str, ...]:
    name = "VOX_CONTROL_ALLOWED_HOSTS"
    extra: list[str] = []
    for item in env.get(name, "").split(","):
        suffix = item.strip().lower().removeprefix(".")
        if not suffix:
            continue
        if not is_dns_name(suffix) or "." not in suffix:
            raise SettingsError(
                f"{name}: {item.strip()!r} is not a host-name suffix like voximplant.com "
                "(no wildcards, IP addresses or single labels)"
            )
        extra.append(suffix)
    return tuple(dict.fromkeys((*DEFAULT_ALLOWED_HOSTS, *extra)))


def _pins(env: Mapping[str, str], allowed: tuple[str, ...]) -> tuple[Pin, ...]:
    name = "VOX_CONTROL_RESOLVE"
    pins: list[Pin] = []
    for item in env.get(name, "").split(","):
        spec = item.strip()
        if not spec:
            continue
        host, sep1, rest = spec.partition(":")
        port, sep2, address = rest.partition(":")
        address = address.removeprefix("[").removesuffix("]")
        host = host.lower().rstrip(".")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            address = ""
        if not (sep1 and sep2 and is_dns_name(host) and address):
            raise SettingsError(
                f"{name}: {spec!r} is not host:port:address (e.g. host.voximplant.com:443:127.0.0.1)"
            )
        if not host_allowed(host, allowed):
            raise SettingsError(
                f"{name}: {host} is not under VOX_CONTROL_ALLOWED_HOSTS ({', '.join(allowed)})"
            )
        pins.append(Pin(host, _port(env, name, port), address))
    return tuple(pins)


def _cert_path(env: Mapping[str, str], name: str, *, directory: bool) -> str | None:
    path = env.get(name, "").strip()
    if not path:
        return None
    is_kind = os.path.isdir(path) if directory else os.path.isfile(path)
    if not is_kind or not os.access(path, os.R_OK):
        kind = "a readable directory" if directory else "a readable file"
        raise SettingsError(f"{name}: {path} is not {kind}")
    return path


def _record_dir(env: Mapping[str, str]) -> Path | None:
    raw = env.get("VOX_RECORD_DIR", "").strip()
    if not raw:
        return None
    path = Path(raw)
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise SettingsError(f"VOX_RECORD_DIR: {raw} is not a writable directory")
    return path


def _llm_key(env: Mapping[str, str], model: str, api_base: str | None) -> str | None:
    provider = model.split("/", 1)[0] if "/" in model else "openai"
    variable = f"{provider.upper()}_API_KEY"
    # LLM_API_KEY wins; otherwise the provider's own variable (OPENAI_API_KEY, ANTHROPIC_API_KEY...).
    key = env.get("LLM_API_KEY", "").strip() or env.get(variable, "").strip() or None
    if key is None and api_base is None:
        raise SettingsError(
            f"{variable} is not set: the LLM ({model}) needs a key (or set LLM_API_KEY, "
            "or LLM_API_BASE for an OpenAI-compatible endpoint)"
        )
    return key


@dataclass(frozen=True)
class Settings:
    llm_model: str = DEFAULT_MODEL
    llm_api_key: str | None = field(default=None, repr=False)
    llm_api_base: str | None = None
    control: ControlNetwork = field(default_factory=ControlNetwork)
    control_secret: str | None = field(default=None, repr=False)
    timings: FlushTimings = field(default_factory=FlushTimings)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    drain_timeout_s: float = 12.0
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    workers: int = 1  # WEB_CONCURRENCY: server processes (agent/runtime.py)
    call_drain_timeout_s: float = DEFAULT_CALL_DRAIN_TIMEOUT_S  # AGENT_DRAIN_TIMEOUT_S
    # AGENT_MAX_CALLS, per process. None (no cap) only for apps built in code (the lab, benchmarks);
    # `from_env` always caps.
    max_calls: int | None = None
    path_secret: str | None = field(default=None, repr=False)  # AGENT_PATH_SECRET: /<secret>/chats, /ws
    record_dir: Path | None = None  # VOX_RECORD_DIR: write each call's harness traffic there
    # VOX_TRANSFER_DESTINATIONS: the names call_transfer may take (agent/destinations.py); empty:
    # call_transfer has no destination (the scenario's default target)
    destinations: tuple[Destination, ...] = ()
    # VOX_SILENCE_PROMPT_S, VOX_SILENCE_HANGUP_S, VOX_MAX_CALL_S (agent/call_limits.py); off when unset
    limits: LimitTimings = field(default_factory=LimitTimings)
    warnings: tuple[str, ...] = ()  # logged once when the server starts

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check `LLM_*`, the provider's key, `VOX_*`, `SSL_CERT_*`, `HOST`, `PORT`,
        `WEB_CONCURRENCY` and `AGENT_*`. `env` may be any plain mapping (default: os.environ)."""
        env = os.environ if env is None else env
        model = env.get("LLM_MODEL", "").strip() or DEFAULT_MODEL
        api_base = env.get("LLM_API_BASE", "").strip() or None
        retry = RetryPolicy(
            deadline_s=_float(env, "VOX_CONTROL_DEADLINE_S", RetryPolicy.deadline_s),
            attempt_timeout_s=_float(env, "VOX_CONTROL_ATTEMPT_TIMEOUT_S", RetryPolicy.attempt_timeout_s),
        )
        timings = FlushTimings(
            no_speech_s=_float(env, "VOX_FLUSH_NO_SPEECH_S", FlushTimings.no_speech_s),
            max_hold_s=_float(env, "VOX_FLUSH_MAX_HOLD_S", FlushTimings.max_hold_s),
        )
        allow_local = _flag(env, "VOX_CONTROL_ALLOW_LOCAL")
        allowed = _allowed_hosts(env)
        pins = _pins(env, allowed)
        warnings: list[str] = []
        if pins and not allow_local:
            warnings.append(
                "VOX_CONTROL_RESOLVE is ignored: pinned addresses are honoured only with "
                "VOX_CONTROL_ALLOW_LOCAL=1 (labs and tests)"
            )
        host = env.get("HOST", "").strip() or "0.0.0.0"
        path_secret = _path_secret(env)
        if path_secret is None and not _is_loopback(host):
            warnings.append(
                f"HOST {host} is not a loopback address and AGENT_PATH_SECRET is not set: anyone who can "
                "reach this port can open calls (each one costs LLM usage, up to AGENT_MAX_CALLS at once); "
                "see docs/security.md"
            )
        control = ControlNetwork(
            allowed_hosts=allowed,
            allow_local=allow_local,
            resolve=pins if allow_local else (),
            ssl_cert_file=_cert_path(env, "SSL_CERT_FILE", directory=False),
            ssl_cert_dir=_cert_path(env, "SSL_CERT_DIR", directory=True),
        )
        if control.ssl_cert_file or control.ssl_cert_dir:
            try:
                trust_store(control)
            except (ssl.SSLError, OSError) as exc:
                names = [n for n in ("SSL_CERT_FILE", "SSL_CERT_DIR") if env.get(n, "").strip()]
                raise SettingsError(f"{' / '.join(names)}: no usable certificates ({exc})") from None
        return cls(
            llm_model=model,
            llm_api_key=_llm_key(env, model, api_base),
            llm_api_base=api_base,
            control=control,
            control_secret=env.get("VOX_CONTROL_SECRET", "").strip() or None,
            timings=timings,
            retry=retry,
            drain_timeout_s=_float(env, "VOX_DRAIN_TIMEOUT_S", retry.deadline_s + 2.0),
            host=host,
            port=_port(env, "PORT", env.get("PORT", "").strip() or str(DEFAULT_PORT)),
            workers=_workers(env),
            call_drain_timeout_s=_float(env, "AGENT_DRAIN_TIMEOUT_S", DEFAULT_CALL_DRAIN_TIMEOUT_S),
            max_calls=_max_calls(env),
            path_secret=path_secret,
            record_dir=_record_dir(env),
            destinations=_destinations(env),
            limits=_limits(env),
            warnings=tuple(warnings),
        )
