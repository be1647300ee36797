from agent.control_url import fingerprint
from agent.log_redaction import redact

URL = "https://203.0.113.7:12092/request/sess-1/t0k3n_SECRET"


def test_start_message_dict_repr_is_redacted() -> None:
    line = f"Received start message: {{'metadata': {{'vox_session_control_url': '{URL}', 'caller': '+1'}}}}"
    out = redact(line)
    assert "t0k3n_SECRET" not in out and "sess-1" not in out
    assert f"'vox_session_control_url': 'https://203.0.113.7:12092/…#{fingerprint(URL)}'" in out
    assert "'caller': '+1'" in out


def test_json_and_plain_forms_are_redacted_and_other_text_kept() -> None:
    assert "SECRET" not in redact(f'{{"vox_session_control_url": "{URL}"}}')
    assert "SECRET" not in redact(f"vox_session_control_url={URL} next")
    assert redact("nothing to see at https://example.com/a/b") == "nothing to see at https://example.com/a/b"
