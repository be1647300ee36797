"""What the app's log filter keeps out of every line: the control URL's path, the start message's
agent_token, and registered secrets (the path secret)."""

from loguru import logger

from agent.log_redaction import install_log_redaction

URL = "https://203.0.113.7:12092/request/sess-1/t0k3n_SECRET"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2ln"
SECRET = "unit-path-secret-0123456789abc"


def logged(message: str) -> str:
    install_log_redaction(secrets=[SECRET])
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), format="{message}")
    try:
        logger.info(message)
    finally:
        logger.remove(sink)
    return "".join(lines)


def test_line_s_start_message_log_keeps_only_the_origin() -> None:
    out = logged(
        f"Received start message: {{'metadata': {{'vox_session_control_url': '{URL}', 'caller': '+1'}}}}"
    )
    assert "t0k3n_SECRET" not in out and "sess-1" not in out
    assert "'vox_session_control_url': 'https://203.0.113.7:12092/REDACTED'" in out
    assert "'caller': '+1'" in out


def test_any_shape_of_metadata_is_redacted_and_userinfo_dropped() -> None:
    assert "SECRET" not in logged(f"{{'vox_session_control_url': ['{URL}']}}")
    assert "SECRET" not in logged(f"{{'vox_session_control_url': {{'u': '{URL}'}}}}")
    out = logged("{'vox_session_control_url': 'https://user:pw@203.0.113.7/request/a/b'}")
    assert "pw" not in out and "user" not in out and "/request/" not in out


def test_other_log_lines_are_untouched() -> None:
    assert "https://example.com/a/b" in logged("nothing to see at https://example.com/a/b")


def test_the_agent_token_value_is_cut_from_a_dict_repr_and_from_json() -> None:
    out = logged(f"Received start message: {{'call_id': 'c1', 'agent_token': '{TOKEN}', 'to': '+1'}}")
    assert TOKEN not in out and "'agent_token': 'REDACTED'" in out and "'to': '+1'" in out
    out = logged(f'{{"agent_token": "{TOKEN}", "from": "+2"}}')
    assert TOKEN not in out and '"agent_token": "REDACTED"' in out and '"from": "+2"' in out
    assert "'agent_token': None" in logged("{'agent_token': None}")  # nothing to hide


def test_a_registered_secret_is_replaced_anywhere() -> None:
    out = logged(f"GET /{SECRET}/ws and again {SECRET}")
    assert SECRET not in out and out.count("REDACTED") == 2


def test_keypad_keys_in_lines_line_writes_are_replaced() -> None:
    # line/voice_agent_app.py: the caller's and the agent's keys, and send_dtmf's arguments.
    assert logged("-> 🧑🔔 User DTMF received: 5") == "-> 🧑🔔 User DTMF received: REDACTED\n"
    assert logged("<- 🤖🔔 Agent DTMF sent: #") == "<- 🤖🔔 Agent DTMF sent: REDACTED\n"
    out = logged("<- 🔧 Tool called: send_dtmf({'button': '9'})")
    assert "9" not in out and "'button': 'REDACTED'" in out
    assert "7" not in logged(
        'Dropping unparseable websocket message: {"type": "dtmf", "button": "7", "x": 1}'
    )
