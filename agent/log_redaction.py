"""Keep control URLs out of logs, including the lines Line itself writes.

Line's `VoiceAgentApp` logs the whole start message, and with it the control URL whose path is a
bearer secret. A loguru patcher rewrites any `vox_session_control_url` value in a record to its
origin and a short fingerprint before any sink sees it.
"""

from __future__ import annotations

import re
from typing import Any

from loguru import logger

from agent.control_url import fingerprint

_URL_VALUE = re.compile(
    r"""(?P<key>vox_session_control_url['"]?\s*[:=]\s*['"]?)(?P<origin>[A-Za-z][A-Za-z0-9+.-]*://[^/'"\s]*)(?P<path>[^'"\s,}]*)"""
)
_installed = False


def redact(text: str) -> str:
    """`text` with every control URL value reduced to `origin/…#<fingerprint>`."""

    def replace(match: re.Match[str]) -> str:
        url = match["origin"] + match["path"]
        tail = f"/…#{fingerprint(url)}" if match["path"] else ""
        return f"{match['key']}{match['origin']}{tail}"

    return _URL_VALUE.sub(replace, text)


def _patch(record: Any) -> None:
    if "vox_session_control_url" in record["message"]:
        record["message"] = redact(record["message"])


def install_log_redaction() -> None:
    """Install the patcher on loguru's global logger (once per process)."""
    global _installed
    if not _installed:
        logger.configure(patcher=_patch)
        _installed = True
