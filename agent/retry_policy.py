"""The retry policy of control POSTs: what counts as success, what is retried, and how often.

Success is HTTP 2xx with a JSON object whose `ok` is true. Retried, with the same action id:
connect errors (a name that did not resolve included), timeouts, dropped connections, 5xx, 429
(honouring `Retry-After`) and a 2xx whose body is not JSON. Never retried: other 4xx and
`{"ok": false}`, the scenario's final word; a certificate that does not verify (`tls_error`: no
retry can fix it, and it may not be VoxEngine answering); a name resolving to a local address.
Backoff is exponential with jitter, and every attempt fits inside one total deadline.

A hang-up ends the VoxEngine session: the scenario terminates it 1 s after an accepted `end_call`
(`voxengine/scenario.js` `endSession`). So when an `end_call` attempt was sent but its answer was
lost, and a later attempt finds nothing accepting connections, the session is gone, most likely
by our own hang-up: the delivery ends as `session_ended`, not as a failure to hang up.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_before_delay
from tenacity.wait import wait_exponential_jitter

from agent.control_transport import ControlConnectError


@dataclass(frozen=True)
class AttemptResult:
    """How one POST attempt ended."""

    accepted: bool
    retryable: bool
    reason: str  # "accepted", "http_503", "timeout", "refused:<code>", ...
    status_code: int | None = None
    retry_after_s: float | None = None
    maybe_acted: bool = False  # sent, but no answer came back: the receiver may have acted on it
    peer: tuple[str, int] | None = None  # the address that answered (for the POST's span)


@dataclass(frozen=True)
class RetryPolicy:
    """Deadlines and backoff for one action's delivery, in seconds."""

    deadline_s: float = 10.0
    attempt_timeout_s: float = 2.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 0.5  # a gap on a live call is dead air; more attempts fit the deadline
    jitter_s: float = 0.2
    max_body_bytes: int = 64 * 1024

    def classify_response(self, status: int, headers: httpx.Headers, body: bytes) -> AttemptResult:
        if status == 429 or status >= 500:
            return AttemptResult(False, True, f"http_{status}", status, _retry_after(headers))
        if not 200 <= status < 300:
            return AttemptResult(False, False, f"http_{status}", status)
        try:
            payload = json.loads(body)
        except ValueError:
            return AttemptResult(False, True, "non_json", status)
        if not isinstance(payload, dict):
            return AttemptResult(False, True, "non_json", status)
        if payload.get("ok") is True:
            return AttemptResult(True, False, "accepted", status)
        error = payload.get("error")
        code = error if isinstance(error, str) and error else "not_ok"
        return AttemptResult(False, False, f"refused:{code[:64]}", status)

    def classify_error(self, exc: Exception) -> AttemptResult:
        for cause in _chain(exc):  # httpx wraps httpcore's error, which wraps the root cause
            if isinstance(cause, ssl.SSLCertVerificationError):
                return AttemptResult(False, False, "tls_error")
            if isinstance(cause, ControlConnectError):
                return AttemptResult(False, cause.retryable, cause.reason)
        if isinstance(exc, httpx.TimeoutException):
            return AttemptResult(
                False, True, "timeout", maybe_acted=not isinstance(exc, httpx.ConnectTimeout)
            )
        if isinstance(exc, httpx.ConnectError):
            return AttemptResult(False, True, "connect_error")
        if isinstance(exc, BodyTooLarge):
            return AttemptResult(False, False, "body_too_large")
        if isinstance(exc, httpx.TransportError):  # dropped connection, protocol error
            return AttemptResult(False, True, "connection_lost", maybe_acted=True)
        return AttemptResult(False, False, f"error:{type(exc).__name__}")

    @staticmethod
    def session_gone(attempts: Sequence[AttemptResult]) -> bool:
        """An earlier attempt may have acted, and now nothing accepts connections (see above)."""
        *earlier, last = attempts
        return last.reason == "connect_error" and any(a.maybe_acted for a in earlier)

    def retrying(self, before_sleep: _BeforeSleep | None = None) -> AsyncRetrying:
        """A tenacity loop over attempts that each return an `AttemptResult`."""
        backoff = wait_exponential_jitter(
            multiplier=self.backoff_initial_s, max=self.backoff_max_s, jitter=self.jitter_s
        )

        def wait(state: RetryCallState) -> float:
            last = _last_result(state)
            if last is not None and last.retry_after_s is not None:
                return last.retry_after_s
            return float(backoff(state))

        return AsyncRetrying(
            retry=retry_if_result(lambda r: isinstance(r, AttemptResult) and r.retryable),
            wait=wait,
            stop=stop_before_delay(self.deadline_s),
            before_sleep=before_sleep,
            retry_error_callback=_last_result,
        )


class BodyTooLarge(Exception):
    """The response body exceeded the cap; it is not read further."""


_BeforeSleep = Callable[[RetryCallState], None]


def _last_result(state: RetryCallState) -> AttemptResult | None:
    outcome = state.outcome
    if outcome is None or outcome.failed:
        return None
    result = outcome.result()
    return result if isinstance(result, AttemptResult) else None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
