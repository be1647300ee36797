"""Keep control URLs out of logs, including the lines Line itself writes.

Line's `VoiceAgentApp` logs the whole start message, and with it the control URL whose path is a
bearer secret, whatever shape the metadata has. A loguru patcher rewrites every URL in such a
record to its origin (`agent.control_url.redact_url`) before any sink sees it.
"""

from __future__ import annotations

from typing import Any

from loguru import logger

from agent.control_url import redact_url

_installed = False


def _patch(record: Any) -> None:
    if "vox_session_control_url" in record["message"]:
        record["message"] = redact_url(record["message"])


def install_log_redaction() -> None:
    """Install the patcher on loguru's global logger (once per process)."""
    global _installed
    if not _installed:
        logger.configure(patcher=_patch)
        _installed = True
