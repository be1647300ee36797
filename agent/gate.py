"""ASGI middleware in front of Line's routes: what reaches them, and what is answered before them.

- `GET /livez`: 200 while the process serves, draining or not, with or without a path secret: a
  liveness probe must never fail during a drain (Kubernetes would kill the calls).
- `GET /status` (Line's): 503 while draining, so load balancers and readiness probes take the
  process out; otherwise Line answers it.
- A new call (websocket) or `POST /chats` while draining or at `AGENT_MAX_CALLS`: HTTP 503, before
  the websocket is accepted and before any LLM work, so a load balancer can send it elsewhere.
  Uvicorn's websocket implementations offer the ASGI "websocket.http.response" extension for an
  HTTP answer to the upgrade; without it, a close before accept (the server answers 403).
- `AGENT_PATH_SECRET`: Line's routes are served under `/<secret>/` only (compared in constant
  time); the bare `/chats`, `/ws` and everything else but `/status` and `/livez` answer 404. The
  prefix is cut from the request's scope in place, so uvicorn's access log (which reads the same
  scope when it logs the response) never sees it.
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

from agent.admission import Admission

LIVEZ, STATUS, CHATS, WS = "/livez", "/status", "/chats", "/ws"
_OPEN_PATHS = (LIVEZ, STATUS)  # reachable without the path secret


class Gate:
    def __init__(self, app: ASGIApp, *, admission: Admission, path_secret: str | None = None) -> None:
        self.app = app
        self.admission = admission
        self._secret = path_secret.encode() if path_secret else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        path: str = scope["path"]
        if path not in _OPEN_PATHS and self._secret is not None:
            inner = self._inside_secret(path)
            if inner is None:
                await _answer(scope, send, 404, {"detail": "Not Found"})
                return
            scope["path"], scope["raw_path"] = inner, inner.encode()
            path = inner
        if path == LIVEZ:
            await _answer(scope, send, 200, {"status": "alive", "draining": self.admission.draining})
            return
        if path == STATUS and self.admission.draining:
            await _answer(scope, send, 503, {"status": "draining"})
            return
        if scope["type"] == "websocket" or path == CHATS:
            refusal = self.admission.refusal()
            if refusal is not None:
                await _answer(scope, send, 503, {"detail": refusal}, retry=True)
                return
        if scope["type"] == "websocket":
            with self.admission.call():
                await self.app(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _inside_secret(self, path: str) -> str | None:
        """`path` without its `/<secret>` prefix, or None if it does not start with the secret."""
        assert self._secret is not None
        first, slash, rest = path[1:].partition("/")
        if not slash or not hmac.compare_digest(first.encode(), self._secret):
            return None
        return "/" + rest


async def _answer(
    scope: Scope, send: Send, status: int, body: dict[str, object], *, retry: bool = False
) -> None:
    content = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    if retry:
        headers.append((b"retry-after", b"1"))  # another replica may take it now
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
    elif "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": content})
    else:
        await send({"type": "websocket.close", "code": 1013})  # before accept: the server answers 403
