"""The "frontend" service of pytracer's two-service test app, served by Gunicorn.

`GET /order/<id>` calls the backend service (tests/apps/backend.py, URL in
PYTRACER_BACKEND_URL) over HTTP with `requests` and returns the combined result. The outgoing
call lives in its own helper so a test can assert the Python caller of its exit span.
"""

import json
import os

import requests
from flask import Flask, Response
from testready import mark_ready

app = Flask(__name__)


mark_ready()


def fetch_item(item_id, headers=None):
    return requests.get(f"{os.environ['PYTRACER_BACKEND_URL']}/items/{item_id}", headers=headers, timeout=10)  # CALL fetch_item

# What an app that propagates context itself sends (the tests assert these ids).
PROPAGATED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@app.get("/order/<int:item_id>")
def order(item_id):
    resp = fetch_item(item_id)
    body = {"order": item_id, "backend_status": resp.status_code, "item": resp.json()}
    return Response(json.dumps(body), status=200 if resp.ok else 502, mimetype="application/json")


@app.get("/order-propagated/<int:item_id>")
def order_propagated(item_id):
    resp = fetch_item(item_id, headers={"traceparent": PROPAGATED})
    return Response(json.dumps({"order": item_id, "backend_status": resp.status_code}), status=200, mimetype="application/json")
