"""Line's start-message log line keeps neither the agent_token's value nor a registered secret."""

from loguru import logger

from agent.log_redaction import install_log_redaction

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


def test_the_agent_token_value_is_cut_from_a_dict_repr_and_from_json() -> None:
    out = logged(f"Received start message: {{'call_id': 'c1', 'agent_token': '{TOKEN}', 'to': '+1'}}")
    assert TOKEN not in out and "'agent_token': 'REDACTED'" in out and "'to': '+1'" in out
    out = logged(f'{{"agent_token": "{TOKEN}", "from": "+2"}}')
    assert TOKEN not in out and '"agent_token": "REDACTED"' in out and '"from": "+2"' in out
    assert "'agent_token': None" in logged("{'agent_token': None}")  # nothing to hide


def test_a_registered_secret_is_replaced_anywhere() -> None:
    out = logged(f"GET /{SECRET}/ws and again {SECRET}")
    assert SECRET not in out and out.count("REDACTED") == 2
