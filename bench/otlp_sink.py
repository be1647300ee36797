"""A do-nothing OTLP/HTTP trace receiver on 127.0.0.1, so the tracing-on runs export for real.

It reads each export request, counts it, and answers 200 with an empty
`ExportTraceServiceResponse`. It runs on a thread of the benchmark's own process, so what it
costs is not charged to the app process being measured.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


class _Handler(BaseHTTPRequestHandler):
    server: _SinkServer

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        with self.server.lock:
            self.server.requests += 1
            self.server.bytes += len(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _SinkServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.requests = 0
        self.bytes = 0


class OtlpSink:
    """`with OtlpSink() as sink:` then export to `sink.traces_endpoint`."""

    def __init__(self) -> None:
        self._server = _SinkServer()
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-sink", daemon=True)

    @property
    def traces_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1/traces"

    @property
    def requests(self) -> int:
        return self._server.requests

    @property
    def bytes(self) -> int:
        return self._server.bytes

    def __enter__(self) -> OtlpSink:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
