"""The app's own code as it was at an earlier commit, to measure a change against in one run.

`HOT_PATH_BASELINE` is the commit just before the hot-path trims (the sender woken per spoken
word, every observer called per word). The levers section runs the app process with that
commit's `agent/` package (`AppOptions.agent_source`); everything around it — lab, bench,
telemetry, the load — is this checkout's. That works while `agent/`'s interface to them is
unchanged since the baseline; when it is not, the row says so instead of a number.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

HOT_PATH_BASELINE = "d36971b8a134dc6e17440149cc693549476c2064"
ROOT = Path(__file__).resolve().parents[1]


class BaselineUnavailable(Exception):
    pass


def extract_agent(commit: str, into: Path) -> Path:
    """`agent/` as of `commit`, written under `into`; returns the directory to put on sys.path."""
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit, "agent"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise BaselineUnavailable(
            f"agent/ at {commit[:7]} is not in this checkout's git history ({detail.decode().strip() or exc})"
        ) from None
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into
