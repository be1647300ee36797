"""The receiver side of the control contract (docs/control-contract.md), on loopback.

``VoxEngineEmulator`` plays the VoxEngine scenario for offline calls and fault tests: it serves
``POST /request/<session>/<token>`` over HTTP/1.1 (h11) with keep-alive on a
``LoopbackControlHost`` — HTTPS under a VoxEngine-shaped host name, reached through the
production connection layer (name, pinned resolution, SNI, certificate verification) — answers
every contract case with HTTP 200 + a JSON body as VoxEngine does, records every control request
and every telephony effect, and injects transport faults (see ``lab.faults``) at the TCP level.
Control URLs have the real shape (real session logs):
``https://www-us-35-230.voximplant.com:<port>/request/<hex16>.<unix time>.<n>_<ip>/<HEX16>``.

The contract logic mirrors ``voxengine/scenario.js`` (``createControlHandler``) and is replayed
against ``voxengine/contract/control_cases.json`` by the tests. Checks run in this order, the first
failure answers:

method (``method_not_allowed``) → body size in bytes (``body_too_large``, > 16 KiB) → with a
secret, the signature (``missing_signature`` when absent or empty; ``bad_signature`` unless the
trimmed header is exactly ``t=<1-15 digits>,v1=<64 hex digits, any case>`` with the right HMAC;
``stale_signature`` when ``t`` is more than 300 s from the wall clock — the MAC is checked first)
→ a JSON object (``bad_json``) → ``id`` and ``X-Idempotency-Key`` (``bad_request``) → a seen id
(its first answer plus ``"duplicate": true``, no second effect) → ``action`` (``bad_request`` if
missing or not a string, else ``unknown_action``) → ``summary`` (``bad_request`` unless a string of
at most 2000 code points) → ``destination`` (``bad_request`` unless absent or a name
``^[a-z0-9_-]{1,64}$``; ``unknown_destination`` unless ApplicationStorage TRANSFER_DESTINATIONS
has it (absent: ``default``), here ``destinations``, or it is ``default`` with TRANSFER_NUMBER,
here ``transfer_number``, set; an ``end_call`` ignores it) → call state (``call_ended``, then
``transfer_in_progress`` for a ``call_transfer``) → accepted, with an ``Effect``.

Headers are matched by lower-cased name, values trimmed, an empty value counts as absent, the
first occurrence wins; the contract logic sees only ``X-`` headers, as the scenario does
(``voxengine.d.ts`` ``_HttpRequestEvent.headers``: "the ones starting with X-"). Answers from the
id check on, refusals included, are remembered per session (the oldest forgotten past 256 ids);
earlier refusals are not.

What VoxEngine does around the contract, modelled (source, or "assumption"):

- after a hang-up (an accepted ``end_call``, or ``hang_up``: the caller left) the scenario
  terminates the session ``terminate_grace_s`` later (``voxengine/scenario.js`` ``endSession``,
  ``TERMINATE_GRACE_MS`` = 1000). A terminated session's URL answers nothing: requests on open
  connections are closed unanswered, and once every session of the emulator is terminated nothing
  listens (connections refused) — assumption: VoxEngine documents only that ``terminate`` stops
  the session (``VoxEngine.terminate``), not what its URL then answers;
- a handler callback is limited to 1 s ("Callback execution time is limited to 1 second",
  VoxEngine limits page): the ``overrun`` fault (``lab.faults``) is a handler aborted at
  ``callback_limit_s``.

Named destinations and keys (issue #18, docs/control-contract.md; the same steps as
``voxengine/scenario.js``): with ``destinations`` (name → ``lab.telephony.Destination``, its
behaviour scripted by ``script_for`` at ``pace``) an accepted transfer dials the named destination
(absent: the one named ``default``, else the legacy ``transfer`` script as ``default``) and then
its fallbacks, one ``TransferPlay`` per attempt, each outcome event naming ``destination`` and
``attempt`` (``lab.telephony``). Keys: ``caller_presses`` is the caller's keypad
(``CallEvents.ToneReceived`` → ``AgentsClient.dtmf``: the agent's ``UserDtmfSent``), only while
the agent is connected; ``agent_dtmf`` is a key the agent sent (Line's ``dtmf`` frame → the
harness → ``Cartesia.AgentsEvents.DTMF``), played with ``sendDigits`` on the target's leg while a
transfer's target answered and is not bridged yet, else on the caller's (``tones``); after the
hand-off the caller's keys go to the target's leg. Every leg dialled is in ``dials`` (number or
``sip:`` URI, and caller ID: the destination's, else ``pstn_caller_id``). ``max_call_s`` is the
scenario's MAX_CALL_S backstop. The session log counts keys, never shows them.
``voxengine/contract/destination_cases.json`` pins these steps for both implementations.

The hang-up chain (docs/control-contract.md "The hang-up chain", decided in issue #17; the same
steps as ``voxengine/scenario.js``):

- the agent's audio is buffered at VoxEngine and played ``playout_lag_s`` behind the harness's
  playback, with WebSocketMediaStarted / WebSocketMediaEnded (ended = audio end + 1 s): see
  ``lab.media_buffer`` for each rule's source;
- an accepted ``end_call`` is answered at once (handlers return within ~1 s, above) and then the
  **playout guard** (``PlayoutGuard``; ApplicationStorage ``HANGUP_PLAYOUT_GUARD`` on/off,
  ``HANGUP_PLAYOUT_GUARD_MAX_S``, default 3 s, at most 10) holds the hang-up while the agent's
  audio plays as the scenario sees it (a started event with no ended event after it), until the
  ended event or the bound; otherwise it hangs up at once;
- just before hanging up the caller for an ``end_call``, while the agent is connected, it sends
  the agent ``{"vox_event": "action_outcome", "action": "end_call", "status": "completed",
  "playout_offset_ms": ...}``, the offset it can know from its media events (``None`` when the
  audio was still playing as far as it can tell, or it saw no media event), and logs it
  (``[cartesia-control] end_call <id> completed playout_offset_ms=...``); a bridged transfer's
  ``connected`` event carries the same figure, at the bridge;
- the agent's socket closing (``agent_closed``; Cartesia closes it with 1000 "call ended by
  agent" once the agent ended the call: Cartesia's Calls API, web-calls.mdx): a 1000 close while
  the call is active keeps the caller; a hang-up under its guard goes on; otherwise the caller
  is hung up ``agent_close_grace_s`` (3 s) later unless an ``end_call`` arrives first ("agent
  closed the call; no hang-up request"); during a transfer it carries on. Any other close ends
  the session at once, as before (a hang-up under its guard happens at once). The shared
  ``voxengine/contract/hangup_cases.json`` pin these steps for both implementations.
  ``close_handling="end_at_once"`` plays the scenario before
  this chain (``onAgentLost``: any close while active ends the session), for comparison.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar

import anyio
import anyio.abc
import h11
import httpx

from agent.control_transport import ControlNetwork, Pin, make_control_client
from lab.control_host import LAB_CONTROL_HOST, LOOPBACK, LoopbackControlHost
from lab.faults import Fault, FaultKind, FaultPicker, FaultPlan
from lab.harness import CALLEE, CALLER
from lab.media_buffer import MediaBuffer
from lab.telephony import (
    ANSWERED_PHASES,
    DEFAULT_DESTINATION,
    Destination,
    Pace,
    TransferPlay,
    TransferScript,
    TransferSettings,
    fallback_chain,
    script_for,
)

__all__ = [
    "LAB_PSTN_CALLER_ID",
    "LAB_TRANSFER_NUMBER",
    "MAX_BODY_BYTES",
    "SIGNATURE_WINDOW_S",
    "Dial",
    "Effect",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "HangUp",
    "PlayoutGuard",
    "RecordedRequest",
    "VoxEngineEmulator",
    "sign_body",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
SIGNATURE_WINDOW_S = 300
MAX_SUMMARY_CODE_POINTS = 2000
MAX_REMEMBERED_IDS = 256
ACTIONS = frozenset({"end_call", "call_transfer"})
_READ_LIMIT = 1024 * 1024  # bodies beyond this are not read; the connection is closed after answering
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_DESTINATION = re.compile(r"[a-z0-9_-]{1,64}")
_SESSION = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_SIGNATURE = re.compile(r"t=([0-9]{1,15}),v1=([0-9A-Fa-f]{64})")
_PATH = re.compile(r"/request/([^/]+)/([^/]+)")
_NON_JSON = b"<html><body>502 Bad Gateway</body></html>"
_T = TypeVar("_T")
_DTMF = re.compile(r"[0-9*#]{1,32}")  # scenario.js DTMF_DIGITS: what Call.sendDigits is given
LAB_TRANSFER_NUMBER = "+15550003333"  # ApplicationStorage TRANSFER_NUMBER in the lab
LAB_PSTN_CALLER_ID = "+15550004444"  # ApplicationStorage PSTN_CALLER_ID in the lab
NORMAL_CLOSE = 1000  # Cartesia's close when the agent ends the call (web-calls.mdx)
CloseHandling = Literal["keep_caller", "end_at_once"]


@dataclass(frozen=True)
class PlayoutGuard:
    """ApplicationStorage ``HANGUP_PLAYOUT_GUARD`` (on/off) and ``HANGUP_PLAYOUT_GUARD_MAX_S``."""

    on: bool = True
    max_s: float = 3.0

    def __post_init__(self) -> None:
        if not 0 < self.max_s <= 10:
            raise ValueError("HANGUP_PLAYOUT_GUARD_MAX_S must be in (0, 10]")


@dataclass(frozen=True)
class HangUp:
    """The scenario hung up the caller's leg: ``why`` ``end_call`` (``action_id`` set), or
    ``agent_lost`` / ``agent_closed`` (the agent's socket closed); ``playout_offset_ms`` is what
    the scenario could know (None: unknown); ``requested_at`` when the hang-up was asked for."""

    time: float
    session: str
    why: str
    action_id: str | None
    playout_offset_ms: int | None
    requested_at: float


def _mac(secret: str, t: str, body: bytes) -> str:
    return hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign_body(secret: str, body: bytes, t: int) -> str:
    """The ``X-Vox-Signature`` value for ``body`` signed at unix time ``t``."""
    return f"t={t},v1={_mac(secret, str(t), body)}"


@dataclass(frozen=True)
class RecordedRequest:
    """One request on a control path, as received, with what was done about it.

    ``time`` is ``clock()`` when the request head arrived; ``path`` is redacted to
    ``/request/<session>/***``; ``headers`` are lower-cased (repeats joined with ", ");
    ``attempt`` counts requests with this ``id`` in this session (1 = first; faulted ones count);
    ``status``/``response`` are what was (or, for ``slow``, will be) sent — ``None`` for ``hang``
    and ``drop``, and ``response`` is ``None`` when the body sent is not JSON; ``connection`` is the
    number of the TCP connection it came on (1-based), to check keep-alive reuse.
    """

    time: float
    session: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    id: str | None
    attempt: int
    fault: Fault | None
    status: int | None
    response: dict[str, Any] | None
    connection: int


@dataclass(frozen=True)
class Effect:
    """A telephony action the scenario started (first-time accepted requests only)."""

    time: float
    session: str
    action: str
    id: str
    summary: str | None


@dataclass(frozen=True)
class Tone:
    """One ``Call.sendDigits`` on a leg: the agent's keys (``AgentsEvents.DTMF``, all its digits at
    once), a destination's extension, or a caller's key passed to the target after the hand-off."""

    time: float
    session: str
    leg: Literal["caller", "target"]
    key: str  # the digits sent


@dataclass(frozen=True)
class Dial:
    """A transfer leg dialled (``VoxEngine.callPSTN`` for a number, ``callSIP`` for a ``sip:``
    URI), recorded even when dialling throws; ``to`` None: a lab phone with no number."""

    time: float
    session: str
    destination: str
    to: str | None
    caller_id: str


@dataclass
class _Session:
    name: str
    id: str  # VoxEngine's session id, as it appears in the control URL
    token: str
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    ended: bool = False  # the agent no longer controls the call (call_ended)
    terminating: bool = False  # terminate() is due
    terminated: bool = False  # the VoxEngine session is gone: its URL answers nothing
    transfer_in_progress: bool = False
    transfer: TransferPlay | None = None  # the scripted transfer under way, if any
    agent: AgentLink | None = None  # the agent's side of the call, when the lab linked one
    agent_gone: bool = False
    media: MediaBuffer = field(default_factory=MediaBuffer)
    hang_up_pending: bool = False  # an accepted end_call under the playout guard
    agent_lost: bool = False  # the agent's socket failed (an abnormal close): nothing waits
    bridged: bool = False


@dataclass(frozen=True)
class AgentLink:
    """How the emulated scenario reaches the agent of a session: `client.custom({metadata})`
    (Line: `UserCustomSent`), and `client.close()` (the harness then closes the agent's socket)."""

    custom: Callable[[dict[str, Any]], Awaitable[object]]
    close: Callable[[], Awaitable[object]]
    dtmf: Callable[[str], Awaitable[object]] | None = None  # `client.dtmf(...)`: a caller's key


def _refuse(code: str) -> dict[str, Any]:
    return {"ok": False, "error": code}


def _contract_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Headers as the scenario sees them: only ``X-`` ones (``voxengine.d.ts``
    ``_HttpRequestEvent.headers``), lower-cased names, trimmed values, empty = absent, first
    occurrence wins."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1").strip().lower(), value.decode("latin-1").strip()
        if key.startswith("x-") and text and key not in headers:
            headers[key] = text
    return headers


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(body: bytes) -> Any:
    return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)


def _lenient_id(body: bytes, headers: dict[str, str]) -> str | None:
    """The action id, for attempt counting, before (or without) running the contract."""
    try:
        parsed = _loads(body) if len(body) <= MAX_BODY_BYTES else None
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("id"), str):
        return str(parsed["id"])
    return headers.get("x-idempotency-key")


class VoxEngineEmulator:
    """A faithful, fault-injecting receiver of the control contract; use as ``async with``."""

    def __init__(
        self,
        *,
        faults: FaultPlan | None = None,
        secret: str | None = None,
        name: str = LAB_CONTROL_HOST,
        tls: ssl.SSLContext | None = None,
        terminate_grace_s: float = 1.0,
        callback_limit_s: float = 1.0,
        transfer: TransferScript | None = None,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
        playout_lag_s: float = 0.0,
        guard: PlayoutGuard | None = None,
        agent_close_grace_s: float = 3.0,
        close_handling: CloseHandling = "keep_caller",
        destinations: Iterable[Destination] | None = None,
        pace: Pace | None = None,
        settings: TransferSettings | None = None,
        transfer_number: str | None = LAB_TRANSFER_NUMBER,
        pstn_caller_id: str = LAB_PSTN_CALLER_ID,
        max_call_s: float | None = None,
    ) -> None:
        if playout_lag_s < 0:
            raise ValueError("playout_lag_s must be >= 0")
        self.playout_lag_s = playout_lag_s
        self.guard = guard or PlayoutGuard()
        self.agent_close_grace_s = agent_close_grace_s
        self.close_handling: CloseHandling = close_handling
        self.hang_ups: list[HangUp] = []
        """Every hang-up of a caller's leg the scenario did, in order."""
        self._faults = FaultPicker(faults)
        self.terminate_grace_s = terminate_grace_s
        self.callback_limit_s = callback_limit_s
        self.transfer_script = transfer
        """What the phone does after an accepted transfer (``lab.telephony``); None: the transfer
        stays under way until ``transfer_connected`` / ``transfer_failed``."""
        self.destinations: dict[str, Destination] | None = (
            {d.name: d for d in destinations} if destinations is not None else None
        )
        """ApplicationStorage TRANSFER_DESTINATIONS (None: not set), each with its behaviour."""
        self.pace = pace or Pace()
        self.transfer_settings = settings
        """ApplicationStorage TRANSFER_* keys for the destinations' legs (None: ``pace``'s)."""
        self.transfer_number = transfer_number
        """ApplicationStorage TRANSFER_NUMBER, the destination ``default`` (None: not set)."""
        self.pstn_caller_id = pstn_caller_id
        self.max_call_s = max_call_s
        """ApplicationStorage MAX_CALL_S, the scenario's hard limit from the answer (None: off)."""
        self.dials: list[Dial] = []
        """Every transfer leg dialled, in order."""
        self.tones: list[Tone] = []
        """Every ``sendDigits`` on a leg, in order."""
        self.caller_keys = 0
        """Keys the caller pressed that reached the agent."""
        self.transfers: list[TransferPlay] = []
        self.custom_events: list[tuple[str, dict[str, Any]]] = []
        """Every outcome event the emulated scenario sent an agent: (session, metadata)."""
        self._secret = secret
        self._host = LoopbackControlHost(self._serve_connection, name=name, tls=tls)
        self._clock = clock
        self._wall_clock = wall_clock
        self._sessions: dict[str, _Session] = {}
        self._by_token: dict[str, _Session] = {}
        self._changed: anyio.Event | None = None
        self.requests: list[RecordedRequest] = []
        self.effects: list[Effect] = []
        self.warmups = 0
        """HEAD/GET/OPTIONS requests to ``/`` (connection warm-ups), answered 404."""
        self.not_found = 0
        """Other requests to unknown paths, answered 404."""
        self.connections = 0
        """TLS connections accepted."""
        self.unanswered = 0
        """Requests to a terminated session, closed without an answer."""

    # -- lifecycle -------------------------------------------------------------------------------

    async def __aenter__(self) -> VoxEngineEmulator:
        self._changed = anyio.Event()
        await self._host.__aenter__()
        for session in self._sessions.values():
            if session.terminating:  # ended before the emulator served
                self._host.start_soon(self._terminate_later, session)
            self._start_backstop(session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._host.__aexit__(exc_type, exc, tb)

    # -- addresses ------------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        """``https://www-us-35-230.voximplant.com:<port>`` (RuntimeError before it first served)."""
        return self._host.origin

    @property
    def network(self) -> ControlNetwork:
        """How a client reaches this emulator by name (pin to 127.0.0.1, the lab CA)."""
        return self._host.network

    def client(self) -> httpx.AsyncClient:
        """A pooled control client that reaches this emulator by name, as the app's does."""
        return make_control_client(self.network)

    @property
    def server_names(self) -> list[str | None]:
        """The SNI name of every TLS handshake the emulator took, in order."""
        return self._host.server_names

    @property
    def pin(self) -> Pin:
        """``VOX_CONTROL_RESOLVE`` entry: this emulator's name and port to 127.0.0.1."""
        return self._host.pin

    def env(self) -> dict[str, str]:
        """``network`` as environment variables, for an app in its own process."""
        return self._host.env()

    def start_metadata(
        self, session: str = "s1", *, caller: str = CALLER, callee: str = CALLEE
    ) -> dict[str, str]:
        """The agent's start metadata, as ``voxengine/scenario.js`` sends it (``connectAgent``:
        ``client.start({metadata: {vox_session_control_url, caller, callee}})``)."""
        return {"vox_session_control_url": self.control_url(session), "caller": caller, "callee": callee}

    def control_url(self, session: str = "s1") -> str:
        """The control URL of ``session`` (created on first use, with a fresh id and token)."""
        state = self._session(session)
        return f"{self.origin}/request/{state.id}/{state.token}"

    # -- scenario-side events --------------------------------------------------------------------

    def hang_up(self, session: str = "s1") -> None:
        """The caller hung up: later new actions in ``session`` get ``call_ended``, and the session
        is terminated ``terminate_grace_s`` later (a transfer ringing is cancelled)."""
        state = self._session(session)
        self._cancel_transfer(state, "caller_hung_up")
        self._end_session(state)

    def terminated(self, session: str = "s1") -> bool:
        return self._session(session).terminated

    def session_ended(self, session: str = "s1") -> bool:
        """The scenario ended the session (``endSession``: legs hung up, termination due)."""
        return self._session(session).terminating

    async def wait_terminated(self, session: str = "s1", *, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until ``session`` was terminated; raises ``TimeoutError``."""
        state = self._session(session)
        with anyio.fail_after(timeout):
            while not state.terminated:
                assert self._changed is not None, "VoxEngineEmulator is not serving; use `async with`"
                await self._changed.wait()

    def _end_session(self, state: _Session) -> None:
        """The scenario's ``endSession``: no more agent control, the agent closed (``stopAgent``),
        ``terminate`` after the grace."""
        state.ended = True
        if state.terminating:
            return
        state.terminating = True
        if self._changed is not None:  # serving; otherwise scheduled when it starts
            self._host.start_soon(self._detach_agent, state)
            self._host.start_soon(self._terminate_later, state)

    async def _detach_agent(self, state: _Session) -> None:
        """``stopAgent``: the Cartesia client is closed, so the harness ends the agent's call."""
        if state.agent is not None and not state.agent_gone:
            state.agent_gone = True
            await state.agent.close()

    async def _terminate_later(self, state: _Session) -> None:
        await anyio.sleep(self.terminate_grace_s)
        if all(s.terminated or s is state for s in self._sessions.values()):
            await self._host.stop_listening()  # before it shows as terminated: then nothing listens
        state.terminated = True
        self._notify()

    def link_agent(self, session: str, link: AgentLink) -> None:
        """The agent of ``session``: outcome events go to it; it is detached on a bridge."""
        self._session(session).agent = link

    def agent_gone(self, session: str = "s1") -> None:
        """The agent's websocket closed (``onWebSocketClose``): it hears nothing more."""
        self._session(session).agent_gone = True

    def transfer_connected(self, session: str = "s1") -> None:
        """The transfer target answered: the agent no longer controls the call (``call_ended``)."""
        state = self._session(session)
        state.transfer_in_progress, state.ended = False, True

    def transfer_failed(self, session: str = "s1") -> None:
        """The transfer under way in ``session`` failed; the call goes on and may transfer again."""
        self._session(session).transfer_in_progress = False

    # -- keys (DTMF) -------------------------------------------------------------------------------

    async def caller_presses(self, keys: str, session: str = "s1") -> int:
        """The caller presses `keys` (``CallEvents.ToneReceived`` → ``AgentsClient.dtmf``): each
        reaches the agent while it is connected; returns how many did."""
        state = self._session(session)
        if state.bridged and not state.terminating:  # handed off: to the target (scenario.js onCallerTone)
            for key in keys:
                self.tones.append(Tone(self._clock(), session, "target", key))
            log.info("voxengine emulator: %d caller keys to the transfer target", len(keys))
            self._notify()
            return 0
        sent = 0
        for key in keys:
            if state.agent is None or state.agent.dtmf is None or state.agent_gone or state.bridged:
                break
            await state.agent.dtmf(key)
            sent += 1
        self.caller_keys += sent
        log.info("voxengine emulator: %d caller keys to the agent", sent)  # never the keys
        return sent

    def agent_dtmf(self, digits: str, session: str = "s1") -> None:
        """Keys the agent sent (``Cartesia.AgentsEvents.DTMF``, one event may carry several):
        played with one ``sendDigits`` on the target's leg while its target answered and is not
        bridged, else on the caller's. Unless all are 0-9 * # (1-32 of them), none is played
        (scenario.js ``onAgentDtmf``; destination_cases.json)."""
        if not _DTMF.fullmatch(digits):
            log.info("voxengine emulator: agent DTMF ignored: not 1-32 of 0-9 * #")
            return
        state = self._session(session)
        play = state.transfer
        answered = play is not None and play.phase in ANSWERED_PHASES
        if not answered and (state.terminating or state.bridged):
            return  # no leg the agent deals with
        leg: Literal["caller", "target"] = "target" if answered else "caller"
        self.tones.append(Tone(self._clock(), session, leg, digits))
        log.info("voxengine emulator: %d agent digit(s) played on the %s leg", len(digits), leg)
        self._notify()

    async def wait_for_tones(self, n: int, *, timeout: float) -> list[Tone]:  # noqa: ASYNC109
        """Wait until ``n`` keys were played on a leg; raises ``TimeoutError``."""
        return await self._wait_for(self.tones, n, timeout)

    def caller_with(self, session: str = "s1") -> Literal["agent", "target", "nobody"]:
        """Who the caller is with now (the contract cases' ``caller_with``)."""
        state = self._session(session)
        if state.terminating:
            return "nobody"
        if state.bridged:
            return "target"
        return "agent" if state.agent is not None and not state.agent_gone else "nobody"

    # -- MAX_CALL_S ------------------------------------------------------------------------------

    def _start_backstop(self, state: _Session) -> None:
        if self.max_call_s is not None and self._changed is not None:
            self._host.start_soon(self._max_call_backstop, state)

    async def _max_call_backstop(self, state: _Session) -> None:
        """MAX_CALL_S (scenario.js ``startMaxCallTimer``): at the limit, counted from the answer
        (here: the session's first use), the call ends whatever the agent does (a transfer under
        way: ``failed`` ``cancelled``), until the hand-off to a transfer target."""
        assert self.max_call_s is not None
        await anyio.sleep(self.max_call_s)
        if state.terminating or state.bridged:
            return
        log.info("voxengine emulator: maximum call length reached (MAX_CALL_S %s s)", self.max_call_s)
        self._cancel_transfer(state, "cancelled")
        self._hang_up_caller(state, "max_call_s", None, self._clock())

    # -- the agent's audio and socket: the hang-up chain -----------------------------------------

    def media(self, session: str = "s1") -> MediaBuffer:
        """The agent's audio at VoxEngine in ``session`` (``lab.media_buffer``)."""
        return self._session(session).media

    def agent_audio(
        self, session: str, *, started_at: float | None = None, stopped_at: float | None = None
    ) -> None:
        """The harness started (or stopped) playing the agent's audio at this time (lab clock):
        VoxEngine plays it ``playout_lag_s`` later."""
        media = self._session(session).media
        if started_at is not None:
            media.harness_started(started_at)
        if stopped_at is not None:
            media.harness_stopped(stopped_at)
        self._notify()

    def agent_closed(self, session: str = "s1", code: int = NORMAL_CLOSE) -> None:
        """The agent's websocket closed with ``code`` (``onWebSocketClose``; an error is any other
        code): the scenario's close handling, see the module docstring."""
        state = self._session(session)
        if state.agent_gone or state.terminating:
            return  # the scenario closed it itself (``stopAgent``), or already knew
        state.agent_gone = True
        if state.transfer_in_progress or state.bridged:
            log.info("voxengine emulator: agent closed (%s); the transfer carries on", code)
        elif state.hang_up_pending and code != NORMAL_CLOSE:
            state.agent_lost = True  # the guard's hang-up happens now (hangup_cases.json)
            self._notify()
        elif code != NORMAL_CLOSE or self.close_handling == "end_at_once":
            self._hang_up_caller(state, "agent_lost", None, self._clock())
        elif not state.hang_up_pending and self._changed is not None:
            self._host.start_soon(self._await_hang_up_request, state)

    async def _await_hang_up_request(self, state: _Session) -> None:
        """A normal close with no hang-up under way: keep the caller ``agent_close_grace_s`` for
        the end_call POST (it may still come: the agent's turn end), then hang up."""
        closed_at = self._clock()
        deadline = closed_at + self.agent_close_grace_s
        while not (state.terminating or state.hang_up_pending) and self._clock() < deadline:
            await self._wait_changed(deadline - self._clock())
        if not (state.terminating or state.hang_up_pending):
            log.info("voxengine emulator: agent closed the call; no hang-up request")
            self._hang_up_caller(state, "agent_closed", None, closed_at)

    async def _hang_up_after_guard(self, state: _Session, action_id: str) -> None:
        """An accepted end_call: the playout guard, ``completed`` to the agent, the hang-up."""
        requested = self._clock()
        deadline = requested + self.guard.max_s
        while self.guard.on and not (state.terminating or state.agent_lost) and self._clock() < deadline:
            if not state.media.playing_as_seen(self._clock()):
                break
            due = state.media.next_event_after(self._clock())
            await self._wait_changed(min(deadline, due if due is not None else deadline) - self._clock())
        if state.terminating:
            return  # the session ended first (the caller hung up): nothing to complete
        at = self._clock()
        offset = state.media.known_offset_ms(at)
        if state.agent is not None and not state.agent_gone:
            metadata = {"vox_event": "action_outcome", "id": action_id, "action": "end_call"}
            await self._tell_agent(state, {**metadata, "status": "completed", "playout_offset_ms": offset})
        shown = "null" if offset is None else offset  # as the scenario's session log writes it
        log.info("[cartesia-control] end_call %s completed playout_offset_ms=%s", action_id, shown)
        self._hang_up_caller(state, "end_call", action_id, requested, at=at, offset=offset)

    def _hang_up_caller(
        self,
        state: _Session,
        why: str,
        action_id: str | None,
        requested_at: float,
        *,
        at: float | None = None,
        offset: int | None = None,
    ) -> None:
        """The caller's leg is hung up now: recorded with the offset the scenario knew."""
        at = self._clock() if at is None else at
        if why != "end_call":
            offset = state.media.known_offset_ms(at)
        self.hang_ups.append(HangUp(at, state.name, why, action_id, offset, requested_at))
        self._end_session(state)
        self._notify()

    async def _tell_agent(self, state: _Session, metadata: dict[str, Any]) -> None:
        """``client.custom({metadata})``: an outcome event for the agent (Line ``UserCustomSent``)."""
        self.custom_events.append((state.name, metadata))
        self._notify()
        if state.agent is not None:
            await state.agent.custom(metadata)

    async def _wait_changed(self, limit_s: float) -> None:
        assert self._changed is not None, "VoxEngineEmulator is not serving; use `async with`"
        changed = self._changed
        with anyio.move_on_after(max(0.0, limit_s)):
            await changed.wait()

    def _session(self, name: str) -> _Session:
        state = self._sessions.get(name)
        if state is None:
            if not _SESSION.fullmatch(name):
                raise ValueError(f"bad session name {name!r}")
            number = len(self._sessions) + 1
            session_id = f"{secrets.token_hex(8).upper()}.{int(self._wall_clock())}.{number}_{LOOPBACK}"
            state = _Session(
                name, session_id, secrets.token_hex(8).upper(), media=MediaBuffer(self.playout_lag_s)
            )
            self._sessions[name] = state
            self._by_token[state.token] = state
            self._start_backstop(state)
        return state

    # -- waiting without sleeps ------------------------------------------------------------------

    async def wait_for_requests(self, n: int, *, timeout: float) -> list[RecordedRequest]:  # noqa: ASYNC109
        """Wait until ``n`` control requests arrived; raises ``TimeoutError``."""
        return await self._wait_for(self.requests, n, timeout)

    async def wait_for_effects(self, n: int, *, timeout: float) -> list[Effect]:  # noqa: ASYNC109
        """Wait until ``n`` effects happened; raises ``TimeoutError``."""
        return await self._wait_for(self.effects, n, timeout)

    async def wait_for_hang_ups(self, n: int, *, timeout: float) -> list[HangUp]:  # noqa: ASYNC109
        """Wait until the scenario hung up ``n`` callers; raises ``TimeoutError``."""
        return await self._wait_for(self.hang_ups, n, timeout)

    async def _wait_for(self, items: list[_T], n: int, limit_s: float) -> list[_T]:
        with anyio.fail_after(limit_s):
            while len(items) < n:
                if self._changed is None:
                    raise RuntimeError("VoxEngineEmulator is not serving; use `async with`")
                await self._changed.wait()
        return list(items)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = anyio.Event()

    # -- HTTP/1.1 over h11 -------------------------------------------------------------------------

    async def _serve_connection(self, stream: anyio.abc.ByteStream) -> None:
        self.connections += 1
        number = self.connections
        try:
            async with stream:
                await self._connection_loop(stream, number)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError):
            pass
        except Exception:
            log.exception("voxengine emulator: connection %d failed", number)

    async def _connection_loop(self, stream: anyio.abc.ByteStream, number: int) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            try:
                event = await next_h11_event(conn, stream)
                if isinstance(event, h11.ConnectionClosed):
                    return
                assert isinstance(event, h11.Request)
                arrived = self._clock()
                body, complete = await self._read_body(conn, stream)
            except h11.RemoteProtocolError:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await _send(conn, stream, 400, [], b"")
                return
            keep = await self._respond(conn, stream, event, body, arrived, number, complete)
            if not keep or not complete or conn.our_state is not h11.DONE:
                return
            if conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _read_body(self, conn: h11.Connection, stream: anyio.abc.ByteStream) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await next_h11_event(conn, stream)
            if isinstance(event, h11.EndOfMessage):
                return b"".join(chunks), True
            if isinstance(event, h11.Data):
                size += len(event.data)
                chunks.append(event.data)
                if size > _READ_LIMIT:
                    return b"".join(chunks), False
            elif isinstance(event, h11.ConnectionClosed):
                raise anyio.EndOfStream

    async def _respond(
        self,
        conn: h11.Connection,
        stream: anyio.abc.ByteStream,
        request: h11.Request,
        body: bytes,
        arrived: float,
        number: int,
        complete: bool,
    ) -> bool:
        """Answer one request; False when the connection must close."""
        method = request.method.decode("ascii", "replace").upper()
        path = request.target.decode("latin-1").split("?", 1)[0]
        match = _PATH.fullmatch(path)
        session = self._by_token.get(match.group(2)) if match else None
        if session is not None and session.terminated:
            self.unanswered += 1
            self._notify()
            return False  # a dead session: the connection closes unanswered
        if session is None or match is None or match.group(1) != session.id:
            if path == "/" and method in ("HEAD", "GET", "OPTIONS"):
                self.warmups += 1
            else:
                self.not_found += 1
            await _send(conn, stream, 404, [], b"" if method == "HEAD" else b"not found")
            return True

        headers: dict[str, str] = {}
        for name, value in request.headers:
            key, text = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        contract_headers = _contract_headers(request.headers)
        action_id = _lenient_id(body, contract_headers)
        attempt = 1
        if action_id is not None:
            attempt = session.attempts.get(action_id, 0) + 1
            session.attempts[action_id] = attempt
        fault = self._faults.pick(attempt)

        status: int | None = 200
        result: dict[str, Any] | None = None
        if fault is None or fault.kind == "slow":
            result = self._contract(session, method, contract_headers, body)
        elif fault.kind == "not_ok":
            result = _refuse("injected")
        elif fault.kind == "status":
            status = fault.status
        elif fault.kind in ("hang", "drop"):
            status = None
        elif fault.kind == "overrun":
            status = 500
        self.requests.append(
            RecordedRequest(
                time=arrived,
                session=session.name,
                method=method,
                path=f"/request/{session.name}/***",
                headers=headers,
                body=body,
                id=action_id,
                attempt=attempt,
                fault=fault,
                status=status,
                response=result,
                connection=number,
            )
        )
        self._notify()

        if fault is not None and fault.kind == "drop":
            return False
        if fault is not None and fault.kind == "hang":
            await _wait_closed_by_peer(stream)
            return False
        if fault is not None and fault.kind == "slow":
            await anyio.sleep(fault.delay_s)
        if fault is not None and fault.kind == "overrun":
            await anyio.sleep(self.callback_limit_s)
            await _send(conn, stream, 500, [], b"")
            return complete
        if fault is not None and fault.kind == "status":
            extra = []
            if fault.retry_after_s is not None:
                extra.append(("Retry-After", str(fault.retry_after_s)))
            await _send(conn, stream, fault.status, extra, f"injected {fault.status}".encode())
        elif fault is not None and fault.kind == "non_json":
            await _send(conn, stream, 200, [("Content-Type", "text/html")], _NON_JSON)
        else:
            payload = json.dumps(result, separators=(",", ":")).encode()
            await _send(conn, stream, 200, [("Content-Type", "application/json")], payload)
        return complete

    # -- the contract ---------------------------------------------------------------------------

    def _contract(
        self, session: _Session, method: str, headers: dict[str, str], body: bytes
    ) -> dict[str, Any]:
        if method != "POST":
            return _refuse("method_not_allowed")
        if len(body) > MAX_BODY_BYTES:
            return _refuse("body_too_large")
        if self._secret is not None:
            refusal = self._check_signature(headers.get("x-vox-signature"), body)
            if refusal is not None:
                return _refuse(refusal)
        try:
            data = _loads(body)
        except (ValueError, RecursionError):
            return _refuse("bad_json")
        if not isinstance(data, dict):
            return _refuse("bad_json")
        action_id = data.get("id")
        if not isinstance(action_id, str) or not _ID.fullmatch(action_id):
            return _refuse("bad_request")
        key = headers.get("x-idempotency-key")
        if key is not None and key != action_id:
            return _refuse("bad_request")
        first = session.results.get(action_id)
        if first is not None:
            return {**first, "duplicate": True}
        result = self._decide(session, action_id, data)
        if len(session.results) >= MAX_REMEMBERED_IDS:
            del session.results[next(iter(session.results))]
        session.results[action_id] = result
        return result

    def _decide(self, session: _Session, action_id: str, data: dict[str, Any]) -> dict[str, Any]:
        action = data.get("action")
        if not isinstance(action, str):
            return _refuse("bad_request")
        if action not in ACTIONS:
            return _refuse("unknown_action")
        summary = data.get("summary")
        if "summary" in data and (not isinstance(summary, str) or len(summary) > MAX_SUMMARY_CODE_POINTS):
            return _refuse("bad_request")
        destination = data.get("destination", DEFAULT_DESTINATION)
        if action == "call_transfer":  # end_call ignores it
            if not isinstance(destination, str) or not _DESTINATION.fullmatch(destination):
                return _refuse("bad_request")
            if not self._known(destination):
                return _refuse("unknown_destination")
        if session.ended:
            return _refuse("call_ended")
        if action == "call_transfer":
            if session.transfer_in_progress:
                return _refuse("transfer_in_progress")
            session.transfer_in_progress = True
        else:
            self._cancel_transfer(session, "cancelled")
            session.ended = session.hang_up_pending = True  # the agent's control ends here
            self._host.start_soon(self._hang_up_after_guard, session, action_id)
        text = (summary if isinstance(summary, str) else "") if action == "call_transfer" else None
        self.effects.append(Effect(self._clock(), session.name, action, action_id, text))
        if action == "call_transfer":
            attempts = self._attempts(destination if isinstance(destination, str) else DEFAULT_DESTINATION)
            if attempts:
                self._start_transfer(session, action_id, text or "", attempts)
        self._notify()
        return {"ok": True, "id": action_id, "action": action}

    # -- the phone side of a transfer (lab.telephony) ------------------------------------------------

    def _known(self, name: str) -> bool:
        """A destination in TRANSFER_DESTINATIONS, or ``default`` with TRANSFER_NUMBER set."""
        legacy = name == DEFAULT_DESTINATION and self.transfer_number is not None
        return legacy or name in (self.destinations or {})

    def _attempts(self, name: str) -> list[tuple[Destination, TransferScript]]:
        """What the phone does for each attempt of a transfer to `name`."""
        destinations = self.destinations or {}
        if name not in destinations:  # "default" without such an entry: TRANSFER_NUMBER
            legacy = self.transfer_script  # one attempt, as before #18
            default = Destination(DEFAULT_DESTINATION, to=self.transfer_number)
            return [(default, legacy)] if legacy is not None else []
        chain = fallback_chain(name, destinations)
        return [(d, script_for(d, self.pace, settings=self.transfer_settings)) for d in chain]

    def _start_transfer(
        self,
        session: _Session,
        action_id: str,
        summary: str,
        attempts: list[tuple[Destination, TransferScript]],
        attempt: int = 1,
    ) -> None:
        destination, script = attempts[attempt - 1]
        caller_id = destination.caller_id or self.pstn_caller_id
        self.dials.append(Dial(self._clock(), session.name, destination.name, destination.to, caller_id))

        async def tell_agent(metadata: dict[str, Any]) -> None:
            if metadata.get("status") == "connected":  # sent at the bridge: its playout offset
                metadata = {**metadata, "playout_offset_ms": session.media.known_offset_ms(self._clock())}
            await self._tell_agent(session, metadata)

        async def on_end(how: str) -> None:
            if how == "attempt_failed":  # the next destination of the chain
                self._start_transfer(session, action_id, summary, attempts, attempt + 1)
                return
            session.transfer_in_progress = False
            if how == "connected":  # bridged: the agent is detached and no longer in control
                session.ended = session.bridged = True
                await self._detach_agent(session)
            elif how != "failed":  # "failed": the caller is back with the agent, who may transfer again
                self._end_session(session)

        play = TransferPlay(
            action_id,
            summary,
            script,
            tell_agent,
            lambda: not session.agent_gone,
            on_end,
            self._clock,
            destination=destination.name,
            attempt=attempt,
            last=attempt == len(attempts),
            extension=destination.extension,
            send_digits=lambda digits: self._send_digits(session, digits),
        )
        session.transfer = play
        self.transfers.append(play)
        self._host.start_soon(play.run)

    def _send_digits(self, session: _Session, digits: str) -> None:
        """``sendDigits`` on the transfer target's leg (a destination's extension)."""
        self.tones.append(Tone(self._clock(), session.name, "target", digits))
        self._notify()

    def _cancel_transfer(self, session: _Session, reason: str) -> None:
        play = session.transfer
        if play is not None and not play.over.is_set() and self._changed is not None:
            self._host.start_soon(play.cancel, reason)

    def _check_signature(self, header: str | None, body: bytes) -> str | None:
        assert self._secret is not None
        if not header:
            return "missing_signature"
        match = _SIGNATURE.fullmatch(header)
        if match is None:
            return "bad_signature"
        expected = _mac(self._secret, match.group(1), body)  # over ``t`` as sent
        if not hmac.compare_digest(expected, match.group(2).lower()):
            return "bad_signature"
        if abs(self._wall_clock() - int(match.group(1))) > SIGNATURE_WINDOW_S:
            return "stale_signature"
        return None


async def next_h11_event(conn: h11.Connection, stream: anyio.abc.ByteStream) -> Any:
    """The next h11 event on `stream`, reading as needed (EOF shows as ConnectionClosed)."""
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await stream.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            data = b""
        conn.receive_data(data)


async def _send(
    conn: h11.Connection,
    stream: anyio.abc.ByteStream,
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
) -> None:
    head = [*headers, ("Content-Length", str(len(body)))]
    if not any(name.lower() == "content-type" for name, _ in head):
        head.append(("Content-Type", "text/plain"))
    data = conn.send(h11.Response(status_code=status, headers=head)) or b""
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send(data)


async def _wait_closed_by_peer(stream: anyio.abc.ByteStream) -> None:
    """Hold the connection (answering nothing) until the peer closes it."""
    try:
        while await stream.receive(65536):
            pass
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        return
