"""The VoxEngine control client: retried, idempotent, optionally signed POSTs over one pool.

One `httpx.AsyncClient` serves the whole process (`agent.control_transport.make_control_client`:
keep-alive, no redirects, every connection resolved and checked by our own layer), so a flush
costs one round trip on a connection warmed when the call started. `deliver` never raises: every
ending, good or bad, comes back as a `Delivery` with a reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import httpx
from loguru import logger
from opentelemetry import propagate
from tenacity import RetryCallState

from agent.action_events import Answered, Retrying, Sent
from agent.actions import ControlAction
from agent.control_url import ControlTarget
from agent.retry_policy import AttemptResult, BodyTooLarge, RetryPolicy

# Called for each delivery milestone.
DeliveryListener = Callable[[Sent | Retrying | Answered], None]


@dataclass(frozen=True)
class Delivery:
    """The end of one action's delivery."""

    accepted: bool
    reason: str
    attempts: int


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """`X-Vox-Signature` value: HMAC-SHA256(secret, "<t>.<body>") in hex."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class VoxEngineClient:
    """Sends control actions to VoxEngine per docs/control-contract.md."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        retry: RetryPolicy | None = None,
        secret: str | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.http = http
        self.retry = retry or RetryPolicy()
        self._secret = secret or None
        self._wall_clock = wall_clock

    async def warm(self, target: ControlTarget) -> None:
        """Open a pooled connection to the control host without touching the session.

        A HEAD to the origin root (never the secret path) leaves a kept-alive connection, so the
        flush later costs one round trip instead of TCP + TLS handshakes.
        """
        try:
            with anyio.move_on_after(self.retry.attempt_timeout_s):
                await self.http.head(target.origin + "/", timeout=self.retry.attempt_timeout_s)
        except Exception as exc:  # warming is an optimisation; the POST retries on its own
            logger.debug(f"control host warm-up failed for {target}: {type(exc).__name__}")

    async def deliver(
        self, target: ControlTarget, action: ControlAction, listener: DeliveryListener | None = None
    ) -> Delivery:
        """POST `action` until accepted, refused, or the deadline passes. Never raises."""
        notify = listener or (lambda event: None)
        body = json.dumps(action.body(), separators=(",", ":")).encode()
        attempts = 0
        last: AttemptResult | None = None
        history: list[AttemptResult] = []

        def before_sleep(state: RetryCallState) -> None:
            result = state.outcome.result() if state.outcome and not state.outcome.failed else None
            wait = state.upcoming_sleep
            notify(Retrying(attempts, getattr(result, "reason", "?"), wait))

        deadline = anyio.current_time() + self.retry.deadline_s
        try:
            with anyio.move_on_after(self.retry.deadline_s):
                async for attempt in self.retry.retrying(before_sleep):
                    with attempt:
                        attempts += 1
                        notify(Sent(attempts))
                        last = await self._attempt(target, action, body, deadline)
                        notify(Answered(attempts, last.reason, last.status_code, last.peer))
                    if attempt.retry_state.outcome and not attempt.retry_state.outcome.failed:
                        attempt.retry_state.set_result(last)
                    history.append(last)
                    if action.kind.ends_session and self.retry.session_gone(history):
                        return Delivery(False, "session_ended", attempts)
        except Exception as exc:  # a bug here must not reach the conversation
            logger.exception(f"control delivery crashed for {action.kind.name} to {target}")
            return Delivery(False, f"error:{type(exc).__name__}", attempts)
        if last is None:
            return Delivery(False, "deadline_exceeded", attempts)
        if last.accepted:
            return Delivery(True, "accepted", attempts)
        reason = last.reason if not last.retryable else f"deadline_exceeded:{last.reason}"
        return Delivery(False, reason, attempts)

    async def _attempt(
        self, target: ControlTarget, action: ControlAction, body: bytes, deadline: float
    ) -> AttemptResult:
        # Each attempt gets its own timeout, cut short so the last one still ends by the deadline.
        timeout = max(0.05, min(self.retry.attempt_timeout_s, deadline - anyio.current_time()))
        headers = {"content-type": "application/json", "x-idempotency-key": action.id}
        propagate.inject(headers)  # W3C trace context of the current (action) span, if tracing
        for name in ("traceparent", "tracestate"):
            if name in headers:  # VoxEngine shows the scenario only X- headers
                headers[f"x-{name}"] = headers[name]
        if self._secret:
            headers["x-vox-signature"] = sign(self._secret, body, int(self._wall_clock()))
        try:
            with anyio.fail_after(timeout):
                async with self.http.stream(
                    "POST", target.url, content=body, headers=headers, timeout=timeout
                ) as response:
                    payload = await _read_capped(response, self.retry.max_body_bytes)
        except TimeoutError:
            return AttemptResult(False, True, "timeout")
        except Exception as exc:
            return self.retry.classify_error(exc)
        result = self.retry.classify_response(response.status_code, response.headers, payload)
        return dataclasses.replace(result, peer=_peer(response))


def _peer(response: httpx.Response) -> tuple[str, int] | None:
    """The address the connection went to (our connection layer resolved and checked it)."""
    stream = response.extensions.get("network_stream")
    address = stream.get_extra_info("server_addr") if stream is not None else None
    if isinstance(address, tuple) and len(address) >= 2:
        return str(address[0]), int(address[1])
    return None


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
