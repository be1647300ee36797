"""Settings are checked when the process starts: each unusable value is one error naming its
variable; nothing waits for a call."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.control_transport import Pin
from agent.settings import (
    DEFAULT_CALL_DRAIN_TIMEOUT_S,
    DEFAULT_MAX_CALLS,
    MIN_PATH_SECRET_LENGTH,
    Settings,
    SettingsError,
)
from lab.tls import lab_ca

KEY = {"OPENAI_API_KEY": "sk-test"}
LOOPBACK = {**KEY, "HOST": "127.0.0.1"}
SECRET = "s3cr3t-Path_Prefix.0123~x"


def error_of(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_defaults_with_only_a_key() -> None:
    settings = Settings.from_env(KEY)
    assert settings.llm_model == "gpt-5-nano" and settings.llm_api_key == "sk-test"
    assert settings.control.allowed_hosts == ("voximplant.com",)
    assert not settings.control.allow_local and settings.control.resolve == ()
    assert (settings.host, settings.port) == ("0.0.0.0", 8000)
    assert settings.call_drain_timeout_s == DEFAULT_CALL_DRAIN_TIMEOUT_S == 1800.0
    assert settings.max_calls == DEFAULT_MAX_CALLS and settings.path_secret is None
    assert Settings.from_env(LOOPBACK).warnings == ()


def test_the_drain_timeout_the_call_cap_and_the_path_secret_are_read() -> None:
    env = {**KEY, "AGENT_DRAIN_TIMEOUT_S": "90", "AGENT_MAX_CALLS": " 7 ", "AGENT_PATH_SECRET": SECRET}
    settings = Settings.from_env(env)
    assert (settings.call_drain_timeout_s, settings.max_calls, settings.path_secret) == (90.0, 7, SECRET)
    assert SECRET not in repr(settings)
    assert settings.warnings == ()  # a public address, but behind a secret path


def test_a_public_address_without_a_path_secret_warns_once() -> None:
    for host in ("0.0.0.0", "::", "10.0.0.5", "agent.example.com"):
        [warning] = Settings.from_env({**KEY, "HOST": host}).warnings
        assert warning.startswith(f"HOST {host} is not a loopback address and AGENT_PATH_SECRET is not set")
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert Settings.from_env({**KEY, "HOST": host}).warnings == ()


@pytest.mark.parametrize(
    "secret",
    [
        "short-secret",
        "has a space in it, 24 chars",
        "slash/inside/the/secret/xx",
        "pct%2Fencoded-secret-xx",
        "é" * 20,
    ],
)
def test_a_path_secret_that_is_short_or_not_url_safe_is_refused_without_echoing_it(secret: str) -> None:
    message = error_of({**KEY, "AGENT_PATH_SECRET": secret})
    assert message.startswith("AGENT_PATH_SECRET") and secret not in message
    if len(secret) < MIN_PATH_SECRET_LENGTH:
        assert f"at least {MIN_PATH_SECRET_LENGTH}" in message


def test_no_llm_key_names_the_providers_variable() -> None:
    assert error_of({}).startswith("OPENAI_API_KEY is not set")
    assert error_of({"LLM_MODEL": "anthropic/claude-haiku-4-5"}).startswith("ANTHROPIC_API_KEY is not set")
    assert error_of({"OPENAI_API_KEY": "  "}).startswith("OPENAI_API_KEY is not set")
    assert Settings.from_env({"LLM_API_KEY": "k"}).llm_api_key == "k"
    assert Settings.from_env({"LLM_API_BASE": "http://127.0.0.1:9/v1"}).llm_api_key is None


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"VOX_CONTROL_DEADLINE_S": "ten"}, "VOX_CONTROL_DEADLINE_S"),
        ({"VOX_CONTROL_ATTEMPT_TIMEOUT_S": "-1"}, "VOX_CONTROL_ATTEMPT_TIMEOUT_S"),
        ({"VOX_FLUSH_NO_SPEECH_S": "nan"}, "VOX_FLUSH_NO_SPEECH_S"),
        ({"VOX_FLUSH_MAX_HOLD_S": "inf"}, "VOX_FLUSH_MAX_HOLD_S"),
        ({"VOX_DRAIN_TIMEOUT_S": "0"}, "VOX_DRAIN_TIMEOUT_S"),
        ({"VOX_CONTROL_ALLOW_LOCAL": "maybe"}, "VOX_CONTROL_ALLOW_LOCAL"),
        ({"VOX_CONTROL_ALLOWED_HOSTS": "*.example.org"}, "VOX_CONTROL_ALLOWED_HOSTS"),
        ({"VOX_CONTROL_ALLOWED_HOSTS": "com"}, "VOX_CONTROL_ALLOWED_HOSTS"),
        ({"VOX_CONTROL_ALLOWED_HOSTS": "10.0.0.1"}, "VOX_CONTROL_ALLOWED_HOSTS"),
        ({"VOX_CONTROL_RESOLVE": "www-us-35-230.voximplant.com:12093"}, "VOX_CONTROL_RESOLVE"),
        ({"VOX_CONTROL_RESOLVE": "www-us-35-230.voximplant.com:x:127.0.0.1"}, "VOX_CONTROL_RESOLVE"),
        ({"VOX_CONTROL_RESOLVE": "www-us-35-230.voximplant.com:0:127.0.0.1"}, "VOX_CONTROL_RESOLVE"),
        ({"VOX_CONTROL_RESOLVE": "www-us-35-230.voximplant.com:443:localhost"}, "VOX_CONTROL_RESOLVE"),
        ({"VOX_CONTROL_RESOLVE": "evil.example:443:127.0.0.1"}, "VOX_CONTROL_RESOLVE"),
        ({"SSL_CERT_FILE": "/nonexistent/ca.pem"}, "SSL_CERT_FILE"),
        ({"SSL_CERT_DIR": "/nonexistent"}, "SSL_CERT_DIR"),
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY"),
        ({"WEB_CONCURRENCY": "two"}, "WEB_CONCURRENCY"),
        ({"WEB_CONCURRENCY": "65"}, "WEB_CONCURRENCY"),
        ({"AGENT_DRAIN_TIMEOUT_S": "-5"}, "AGENT_DRAIN_TIMEOUT_S"),
        ({"AGENT_DRAIN_TIMEOUT_S": "half an hour"}, "AGENT_DRAIN_TIMEOUT_S"),
        ({"AGENT_MAX_CALLS": "0"}, "AGENT_MAX_CALLS"),
        ({"AGENT_MAX_CALLS": "-1"}, "AGENT_MAX_CALLS"),
        ({"AGENT_MAX_CALLS": "lots"}, "AGENT_MAX_CALLS"),
        ({"AGENT_MAX_CALLS": "100001"}, "AGENT_MAX_CALLS"),
    ],
)
def test_a_malformed_value_is_one_line_naming_its_variable(env: dict[str, str], variable: str) -> None:
    assert error_of({**KEY, **env}).startswith(variable)


def test_web_concurrency_is_the_worker_count_one_by_default() -> None:
    assert Settings.from_env(KEY).workers == 1
    assert Settings.from_env({**KEY, "WEB_CONCURRENCY": " 3 "}).workers == 3


def test_a_certificate_file_that_does_not_load_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    assert error_of({**KEY, "SSL_CERT_FILE": str(junk)}).startswith("SSL_CERT_FILE")


def test_the_trust_store_and_the_allow_list_are_read() -> None:
    ca = str(lab_ca().ca_file)
    env = {**KEY, "SSL_CERT_FILE": ca, "VOX_CONTROL_ALLOWED_HOSTS": " media.example.org, .Voice.Example.NET "}
    control = Settings.from_env(env).control
    assert control.ssl_cert_file == ca
    assert control.allowed_hosts == ("voximplant.com", "media.example.org", "voice.example.net")


def test_pins_are_honoured_only_in_labs_and_otherwise_ignored_with_one_warning() -> None:
    pins = "www-us-35-230.voximplant.com:12093:127.0.0.1, WWW-RU-52-18.voximplant.com:443:[::1]"
    lab = Settings.from_env({**LOOPBACK, "VOX_CONTROL_RESOLVE": pins, "VOX_CONTROL_ALLOW_LOCAL": "1"})
    assert lab.control.resolve == (
        Pin("www-us-35-230.voximplant.com", 12093, "127.0.0.1"),
        Pin("www-ru-52-18.voximplant.com", 443, "::1"),
    )
    assert lab.warnings == ()
    production = Settings.from_env({**LOOPBACK, "VOX_CONTROL_RESOLVE": pins})
    assert production.control.resolve == ()
    [warning] = production.warnings
    assert "VOX_CONTROL_RESOLVE is ignored" in warning and "VOX_CONTROL_ALLOW_LOCAL=1" in warning
