from loguru import logger

from agent.log_redaction import install_log_redaction

URL = "https://203.0.113.7:12092/request/sess-1/t0k3n_SECRET"


def logged(message: str) -> str:
    install_log_redaction()
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
