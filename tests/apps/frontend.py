"""The "frontend" service of pytracer's two-service test app, served by Gunicorn.

`GET /order/<id>` calls the backend service (tests/apps/backend.py, URL in
PYTRACER_BACKEND_URL) over HTTP with `requests` and returns the combined result. The outgoing
call lives in its own helper so a test can assert the Python caller of its exit span.
"""

import json
import os

import requests
from flask import Flask, Response

app = Flask(__name__)


def _mark_ready():
    # See testapp.py: the harness waits for this marker in every worker.
    ready_dir = os.environ.get("PYTRACER_TESTAPP_READY_DIR")
    if ready_dir:
        with open(os.path.join(ready_dir, str(os.getpid())), "w"):
            pass


_mark_ready()


def fetch_item(item_id):
    return requests.get(f"{os.environ['PYTRACER_BACKEND_URL']}/items/{item_id}", timeout=10)  # CALL fetch_item


@app.get("/order/<int:item_id>")
def order(item_id):
    resp = fetch_item(item_id)
    body = {"order": item_id, "backend_status": resp.status_code, "item": resp.json()}
    return Response(json.dumps(body), status=200 if resp.ok else 502, mimetype="application/json")
