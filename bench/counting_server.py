"""The small HTTP server shared by the benchmark's span receivers (otlp_sink.py and
instana_agent_stub.py): argument parsing, a threaded server on loopback, clean stop on
SIGTERM/SIGINT, and the final counts on stderr."""
import argparse
import json
import signal
import sys
import threading
from http.server import ThreadingHTTPServer


def serve(name, handler, snapshot, description):
    ap = argparse.ArgumentParser(description=description.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    srv = ThreadingHTTPServer((args.host, args.port), handler)
    srv.daemon_threads = True

    def _stop(*_):
        # shutdown() waits for serve_forever to return, so it cannot run on the serving thread.
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"{name} listening on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    srv.serve_forever()
    srv.server_close()
    print(f"{name} final counts: {json.dumps(snapshot())}", file=sys.stderr, flush=True)
