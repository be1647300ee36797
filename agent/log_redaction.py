"""Keep secrets out of logs, including the lines Line itself writes.

Line's `VoiceAgentApp` logs the whole start message (line/voice_agent_app.py `websocket_endpoint`:
"Received start message: {start_data}"), and with it:
- the control URL, whose path is a bearer secret, whatever shape the metadata has: every URL in
  such a record is cut to its origin (`agent.control_url.redact_url`);
- the `agent_token`, "Agent-scoped JWT minted by the API" (line/_harness_types.py `StartInput`), a
  bearer token for Cartesia's API: its value is replaced.
- keypad digits (a keypad entry can be a card number or a PIN): Line logs each key, the caller's
  ("User DTMF received: 5", `ConversationRunner._process_input_event`) and the agent's ("Agent
  DTMF sent: 5", `_map_output_event`), and the `send_dtmf` tool call's arguments ("Tool called:
  send_dtmf({'button': '5'})"); the key is replaced, the line kept.
Secrets registered with `install_log_redaction(secrets=...)` (the path secret) are replaced
wherever they appear. A loguru patcher does all this before any sink sees the record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from loguru import logger

from agent.control_url import REDACTED, redact_url

# `'agent_token': 'eyJ...'` (a dict's repr, as Line logs it) or `"agent_token": "eyJ..."` (JSON).
_AGENT_TOKEN = re.compile(r"""(['"]agent_token['"]\s*:\s*)(['"])(?:(?!\2).)*\2""")

# "... DTMF received: 5" / "... DTMF sent: #", and any `'button': '5'` (a dict's repr or JSON).
_DTMF_KEY = re.compile(r"(DTMF (?:received|sent): ).*")
_BUTTON = re.compile(r"""(['"]button['"]\s*:\s*)(['"])(?:(?!\2).)*\2""")

_installed = False
_secrets: set[str] = set()


def _patch(record: Any) -> None:
    message: str = record["message"]
    if "vox_session_control_url" in message:
        message = redact_url(message)
    if "agent_token" in message:
        message = _AGENT_TOKEN.sub(rf"\1\2{REDACTED}\2", message)
    if "DTMF" in message:
        message = _DTMF_KEY.sub(rf"\1{REDACTED}", message)
    if "button" in message:
        message = _BUTTON.sub(rf"\1\2{REDACTED}\2", message)
    for secret in _secrets:
        if secret in message:
            message = message.replace(secret, REDACTED)
    record["message"] = message


def install_log_redaction(secrets: Iterable[str] = ()) -> None:
    """Install the patcher on loguru's global logger (once per process); `secrets` are added to
    the strings it replaces."""
    global _installed
    _secrets.update(s for s in secrets if s)
    if not _installed:
        logger.configure(patcher=_patch)
        _installed = True
