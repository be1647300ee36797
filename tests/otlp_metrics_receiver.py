"""A real OTLP/HTTP metrics receiver on 127.0.0.1, for tests: `POST /v1/metrics` with an
`ExportMetricsServiceRequest` (protobuf, gzip accepted), decoded with `opentelemetry-proto`; any
other OTLP path (traces from the same endpoint) is answered and ignored. It runs a
`ThreadingHTTPServer` in a thread, as lab/otlp_receiver.py does for traces."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import anyio
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from lab.otlp_decode import attributes

METRICS_PATH = "/v1/metrics"


@dataclass(frozen=True)
class Point:
    """One data point of one metric, with its resource, in arrival order."""

    metric: str
    value: float
    attributes: dict[str, Any]
    resource: dict[str, Any]
    monotonic: bool | None  # a Sum's is_monotonic; None for other kinds


class OtlpMetricsReceiver:
    def __init__(self) -> None:
        self.points: list[Point] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == METRICS_PATH:
                    receiver._receive(ExportMetricsServiceRequest.FromString(body))
                    answer = ExportMetricsServiceResponse().SerializeToString()
                else:
                    answer = b""  # an empty Export*ServiceResponse
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _receive(self, request: ExportMetricsServiceRequest) -> None:
        with self._changed:
            for rm in request.resource_metrics:
                resource = attributes(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        kind = metric.WhichOneof("data")
                        data = getattr(metric, kind)
                        monotonic = data.is_monotonic if kind == "sum" else None
                        for dp in data.data_points:
                            value = dp.as_int if dp.WhichOneof("value") == "as_int" else dp.as_double
                            self.points.append(
                                Point(metric.name, value, attributes(dp.attributes), resource, monotonic)
                            )
            self._changed.notify_all()

    async def wait_for(self, match: Callable[[Point], bool], *, timeout_s: float) -> Point:
        """The first point (received so far or later) that `match`es; TimeoutError after `timeout_s`."""

        def wait() -> Point | None:
            with self._changed:
                self._changed.wait_for(lambda: any(match(p) for p in self.points), timeout_s)
                return next((p for p in self.points if match(p)), None)

        point = await anyio.to_thread.run_sync(wait)
        if point is None:
            raise TimeoutError(f"no matching metric point within {timeout_s} s: {self.points[-5:]}")
        return point

    def __enter__(self) -> OtlpMetricsReceiver:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
