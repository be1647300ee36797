"""A real OTLP/HTTP trace receiver on 127.0.0.1, for tests and benchmarks: what Jaeger's OTLP
endpoint does, minus the storage.

It serves `POST /v1/traces` with `Content-Type: application/x-protobuf` (gzip or deflate
`Content-Encoding` accepted), decodes each body as an `ExportTraceServiceRequest` with
`opentelemetry-proto` (spans read with `lab.otlp_decode`), keeps the raw payloads (for "this
secret is nowhere" checks) and answers an empty `ExportTraceServiceResponse`. It runs a
`ThreadingHTTPServer` in a thread, so it works whatever the test's event loop is doing; the SDK
exporter posts from its own thread. With `decode=False` (benchmarks) it only keeps the bodies,
so decoding costs nothing while measured.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider

from lab.otlp_decode import ReceivedSpan, decode_spans

TRACES_PATH = "/v1/traces"


class OtlpReceiver:
    """Use as a context manager; `endpoint` is the URL to export to."""

    def __init__(self, *, decode: bool = True) -> None:
        self._decode = decode
        self._lock = threading.Lock()
        self.payloads: list[bytes] = []  # decoded-from-transfer-encoding protobuf bodies
        self.requests: list[ExportTraceServiceRequest] = []
        self.rejected: list[tuple[int, str]] = []
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, payload = receiver._handle(self.path, dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="otlp-receiver",
            daemon=True,
        )

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{TRACES_PATH}"

    @property
    def base_url(self) -> str:
        """For OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces)."""
        return self.endpoint.removesuffix(TRACES_PATH)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        lower = {k.lower(): v for k, v in headers.items()}
        if path != TRACES_PATH:
            return self._reject(404, f"path {path}")
        if lower.get("content-type", "").split(";")[0].strip() != "application/x-protobuf":
            return self._reject(415, f"content-type {lower.get('content-type')}")
        encoding = lower.get("content-encoding", "").strip().lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            request = ExportTraceServiceRequest.FromString(body) if self._decode else None
        except (OSError, zlib.error, DecodeError) as exc:
            return self._reject(400, f"undecodable: {exc}")
        with self._lock:
            self.payloads.append(body)
            if request is not None:
                self.requests.append(request)
            self.headers.append(lower)
        return 200, ExportTraceServiceResponse().SerializeToString()

    def _reject(self, status: int, why: str) -> tuple[int, bytes]:
        with self._lock:
            self.rejected.append((status, why))
        return status, b""

    def collect(self, provider: TracerProvider) -> list[ReceivedSpan]:
        """Flush `provider` (everything it has ended so far), then what arrived here, decoded."""
        assert provider.force_flush(10_000), "the export did not finish"
        assert self.rejected == [], self.rejected
        return self.spans()

    def raw(self) -> bytes:
        """Every payload received, concatenated (protobuf, uncompressed)."""
        with self._lock:
            return b"".join(self.payloads)

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            requests = list(self.requests)
        return decode_spans(requests)
