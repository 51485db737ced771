"""Minimal OTLP/HTTP (protobuf) trace sink for the pytracer benchmark (config D).

Accepts POST /v1/traces (application/x-protobuf, optionally Content-Encoding:
gzip or deflate), decodes it as ExportTraceServiceRequest, counts spans (total
and SPAN_KIND_SERVER) and answers 200 with an empty ExportTraceServiceResponse.

  GET  /count  -> {"spans": N, "server_spans": M, "requests": R, "errors": E,
                   "by_scope": {"opentelemetry.instrumentation.flask": N, ...}}
                  (requests = export POSTs received, not HTTP requests to the app)
  POST /reset  -> zeroes the counters (answers /count's JSON from before the reset)
  GET  /ready  -> 200 "ok"
  GET  /spans  -> every span received, decoded (only with OTLP_SINK_KEEP_SPANS=1, for tests):
                  [{"trace_id", "span_id", "parent_span_id", "trace_state", "name", "kind",
                    "status_code", "attributes": {...}, "resource": {...}, "scope"}]

Test knobs (environment): OTLP_SINK_FAIL_FIRST=N answers the first N exports with 503 and
Retry-After: 0, to exercise the sender's retries; OTLP_SINK_KEEP_SPANS=1 keeps spans for /spans.
/count also reports "gzip_requests", "refused" and the last "x-api-key" header seen.

Usage: python bench/otlp_sink.py --port SINKPORT   (binds 127.0.0.1 only)
Stop it with SIGTERM/SIGINT (kill <pid>).
"""

import gzip
import json
import os
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
_counts = {"spans": 0, "server_spans": 0, "requests": 0, "errors": 0, "gzip_requests": 0, "refused": 0}
_by_scope = {}  # instrumentation scope name -> spans
_fail_first = int(os.environ.get("OTLP_SINK_FAIL_FIRST", "0"))
_keep = os.environ.get("OTLP_SINK_KEEP_SPANS") == "1"
_kept = []  # decoded spans, when _keep
_last_api_key = None


def _value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def _attrs(kvs):
    return {kv.key: _value(kv.value) for kv in kvs}


def _decode(rs, ss, sp):
    return {
        "trace_id": sp.trace_id.hex(),
        "span_id": sp.span_id.hex(),
        "parent_span_id": sp.parent_span_id.hex(),
        "trace_state": sp.trace_state,
        "name": sp.name,
        "kind": sp.kind,
        "status_code": sp.status.code,
        "attributes": _attrs(sp.attributes),
        "resource": _attrs(rs.resource.attributes),
        "scope": ss.scope.name,
    }


def _snapshot():
    with _lock:
        out = dict(_counts)
        out["by_scope"] = dict(_by_scope)
        out["x-api-key"] = _last_api_key
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
        elif self.path == "/spans":
            with _lock:
                self._json(list(_kept))
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
        global _fail_first, _last_api_key
        with _lock:
            refuse = _fail_first > 0
            if refuse:
                _fail_first -= 1
                _counts["refused"] += 1
        if refuse:
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "0")
            self.end_headers()
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
                        if _keep:
                            with _lock:
                                _kept.append(_decode(rs, ss, sp))
        except Exception as exc:  # count and report, never crash the sink
            with _lock:
                _counts["errors"] += 1
            self._reply(400, f"bad request: {exc}".encode(), "text/plain")
            return
        with _lock:
            if enc == "gzip":
                _counts["gzip_requests"] += 1
            _last_api_key = self.headers.get("x-api-key")
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
