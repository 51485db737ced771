"""Minimal OTLP/HTTP (protobuf) trace sink for the pytracer benchmark (config D).

Accepts POST /v1/traces (application/x-protobuf, optionally Content-Encoding:
gzip or deflate), decodes it as ExportTraceServiceRequest, counts spans (total
and SPAN_KIND_SERVER) and answers 200 with an empty ExportTraceServiceResponse.

  GET  /count  -> {"spans": N, "server_spans": M, "requests": R, "errors": E,
                   "by_scope": {"opentelemetry.instrumentation.flask": N, ...}}
                  (requests = export POSTs received, not HTTP requests to the app)
  POST /reset  -> zeroes the counters (answers /count's JSON from before the reset)
  GET  /ready  -> 200 "ok"

Usage: python bench/otlp_sink.py --port SINKPORT   (binds 127.0.0.1 only)
Stop it with SIGTERM/SIGINT (kill <pid>).
"""

import gzip
import json
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

import counting_server  # noqa: E402  (bench/ is the script's directory)

_SERVER = Span.SpanKind.SPAN_KIND_SERVER
_EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()

_lock = threading.Lock()
_counts = {"spans": 0, "server_spans": 0, "requests": 0, "errors": 0}
_by_scope = {}  # instrumentation scope name -> spans


def _snapshot():
    with _lock:
        out = dict(_counts)
        out["by_scope"] = dict(_by_scope)
        return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the exporter reuses its connection

    def log_message(self, fmt, *args):  # quiet: one line per export is noise under load
        pass

    def _reply(self, code, body, ctype):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj, code=200):
        self._reply(code, json.dumps(obj).encode(), "application/json")

    def do_GET(self):
        if self.path == "/count":
            self._json(_snapshot())
        elif self.path == "/ready":
            self._reply(200, b"ok", "text/plain")
        else:
            self._reply(404, b"not found", "text/plain")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/reset":
            with _lock:
                before = dict(_counts)
                for k in _counts:
                    _counts[k] = 0
                _by_scope.clear()
            self._json(before)
            return
        if self.path != "/v1/traces":
            self._reply(404, b"not found", "text/plain")
            return
        try:
            enc = (self.headers.get("Content-Encoding") or "").lower()
            if enc == "gzip":
                body = gzip.decompress(body)
            elif enc == "deflate":
                body = zlib.decompress(body)
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            spans = server = 0
            scopes = {}
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    scopes[ss.scope.name] = scopes.get(ss.scope.name, 0) + len(ss.spans)
                    for sp in ss.spans:
                        spans += 1
                        if sp.kind == _SERVER:
                            server += 1
        except Exception as exc:  # count and report, never crash the sink
            with _lock:
                _counts["errors"] += 1
            self._reply(400, f"bad request: {exc}".encode(), "text/plain")
            return
        with _lock:
            _counts["spans"] += spans
            _counts["server_spans"] += server
            _counts["requests"] += 1
            for name, n in scopes.items():
                _by_scope[name] = _by_scope.get(name, 0) + n
        self._reply(200, _EMPTY_RESPONSE, "application/x-protobuf")


def main():
    counting_server.serve("otlp_sink", Handler, _snapshot, __doc__)


if __name__ == "__main__":
    main()
