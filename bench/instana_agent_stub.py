"""Minimal stand-in for the Instana host agent, for the pytracer benchmark (config E).

It implements just the part of the host agent's HTTP API that the Instana Python
sensor (instana 3.x, instana/agent/host.py + instana/fsm.py) uses, so that the
real sensor announces, instruments and reports as it would in production:

  GET|HEAD /                                     agent lookup (sensor needs 2xx)
  PUT  /com.instana.plugin.python.discovery      announce; answers {"pid", "agentUuid", ...}
  HEAD /com.instana.plugin.python.<pid>          agent-ready check / heartbeat (200)
  POST /com.instana.plugin.python.<pid>          metrics + snapshot data (200, empty body = no tasks)
  POST /com.instana.plugin.python/traces.<pid>   spans: a JSON list, counted here
  POST /com.instana.plugin.python/profiles.<pid> profiles (only with INSTANA_AUTOPROFILE)
  POST /com.instana.plugin.python/response.<pid> task responses (never asked for here)
  POST /com.instana.agent.logger                 the sensor's "now online" message

Bench endpoints:
  GET  /count  -> {"spans": N, "server_spans": M, "announces": A, "announced_pids": [...],
                   "ready_pids": [...], "reporting_pids": [...], "metrics_posts": P,
                   "span_posts": S, "errors": E, "by_name": {"wsgi": N, ...}}
                  server_spans = spans with k == 1 (entry spans: one per HTTP request served)
                  ready_pids   = pids that passed the agent-ready HEAD (FSM -> good2go)
                  reporting_pids = pids that have POSTed metrics or spans since announce
  POST /reset  -> zeroes the span/post counters (pid sets are kept)

Usage: python bench/instana_agent_stub.py --port AGENTPORT   (binds 127.0.0.1 only)
Point the sensor at it with INSTANA_AGENT_HOST=127.0.0.1 INSTANA_AGENT_PORT=AGENTPORT.
Stop it with SIGTERM/SIGINT (kill <pid>).
"""

import json
import re
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler

import counting_server  # noqa: E402  (bench/ is the script's directory)

_DISCOVERY = "/com.instana.plugin.python.discovery"
_DATA = re.compile(r"^/com\.instana\.plugin\.python\.(\d+)$")
_TRACES = re.compile(r"^/com\.instana\.plugin\.python/traces\.(\d+)$")
_PROFILES = re.compile(r"^/com\.instana\.plugin\.python/profiles\.(\d+)$")
_RESPONSE = re.compile(r"^/com\.instana\.plugin\.python/response\.(\d+)")

AGENT_UUID = uuid.uuid4().hex

_lock = threading.Lock()
_counts = {"spans": 0, "server_spans": 0, "announces": 0, "metrics_posts": 0, "span_posts": 0, "errors": 0}
_announced = set()
_ready = set()
_reporting = set()
_by_name = {}  # span "n" (e.g. "wsgi") -> spans


def _snapshot():
    with _lock:
        out = dict(_counts)
        out["announced_pids"] = sorted(_announced)
        out["ready_pids"] = sorted(_ready)
        out["reporting_pids"] = sorted(_reporting)
        out["by_name"] = dict(_by_name)
        return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the sensor's requests.Session reuses connections

    def log_message(self, fmt, *args):
        pass

    def _reply(self, code, body=b"", ctype="application/json", head=False):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, obj, code=200):
        self._reply(code, json.dumps(obj).encode())

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _path(self):
        return self.path.split("?", 1)[0]

    def do_HEAD(self):
        path = self._path()
        m = _DATA.match(path)
        if m:
            pid = int(m.group(1))
            with _lock:
                known = pid in _announced
                if known:
                    _ready.add(pid)
            # The real agent answers 200 once it has accepted the announced process.
            self._reply(200 if known else 404, head=True)
        elif path == "/":
            self._reply(200, head=True)
        else:
            self._reply(404, head=True)

    def do_GET(self):
        path = self._path()
        if path == "/count":
            self._json(_snapshot())
        elif path == "/":
            self._json({"version": "stub", "agentUuid": AGENT_UUID})
        else:
            self._reply(404, b"not found", "text/plain")

    def do_PUT(self):
        body = self._body()
        if self._path() != _DISCOVERY:
            self._reply(404, b"not found", "text/plain")
            return
        try:
            d = json.loads(body)
            pid = int(d["pid"])
        except Exception as exc:
            with _lock:
                _counts["errors"] += 1
            self._reply(400, f"bad announce: {exc}".encode(), "text/plain")
            return
        with _lock:
            _counts["announces"] += 1
            _announced.add(pid)
        # Shape of the real agent's announce response (the sensor reads pid, agentUuid,
        # secrets, extraHeaders/tracing and plugin.python.poll_rate; the rest are defaults).
        self._json({
            "pid": pid,
            "agentUuid": AGENT_UUID,
            "secrets": {"matcher": "contains-ignore-case", "list": ["key", "pass", "secret"]},
            "extraHeaders": [],
        })

    def do_POST(self):
        body = self._body()
        path = self._path()
        if path == "/reset":
            with _lock:
                before = dict(_counts)
                for k in _counts:
                    _counts[k] = 0
                _by_name.clear()
            self._json(before)
            return
        m = _TRACES.match(path)
        if m:
            try:
                spans = json.loads(body)
                total = len(spans)
                server = sum(1 for s in spans if isinstance(s, dict) and s.get("k") == 1)
                names = {}
                for s in spans:
                    n = s.get("n") if isinstance(s, dict) else None
                    names[n] = names.get(n, 0) + 1
            except Exception as exc:
                with _lock:
                    _counts["errors"] += 1
                self._reply(400, f"bad spans: {exc}".encode(), "text/plain")
                return
            with _lock:
                _counts["spans"] += total
                _counts["server_spans"] += server
                _counts["span_posts"] += 1
                _reporting.add(int(m.group(1)))
                for n, c in names.items():
                    _by_name[str(n)] = _by_name.get(str(n), 0) + c
            self._reply(204)
            return
        m = _DATA.match(path)
        if m:
            with _lock:
                _counts["metrics_posts"] += 1
                _reporting.add(int(m.group(1)))
            # 200 with an empty body: no agent tasks for the sensor (it parses bodies > 2 bytes).
            self._reply(200)
            return
        if _PROFILES.match(path) or _RESPONSE.match(path) or path == "/com.instana.agent.logger":
            self._reply(200)
            return
        self._reply(404, b"not found", "text/plain")


def main():
    counting_server.serve("instana_agent_stub", Handler, _snapshot, __doc__)


if __name__ == "__main__":
    main()
