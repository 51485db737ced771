"""Demo app for `cargo xtask demo`: routes with different methods, statuses and latencies, so that
the spans pytracer prints show some variety. Run by Gunicorn as `app:app` from this directory."""
import itertools
import time

from flask import Flask, jsonify, request

app = Flask(__name__)
_order_ids = itertools.count(1000)


@app.get("/")
def hello():
    return "Hello from the pytracer demo!\n"


@app.get("/users/<int:user_id>")
def user(user_id):
    return jsonify(id=user_id, name=f"user-{user_id}")


@app.post("/checkout")
def checkout():
    order = request.get_json(silent=True) or {}
    time.sleep(0.02)  # a payment call
    return jsonify(order_id=next(_order_ids), items=len(order.get("items", []))), 201


@app.get("/slow")
def slow():
    time.sleep(0.1)  # a slow query
    return jsonify(result="done")


@app.get("/error")
def error():
    return jsonify(error="something went wrong"), 500


# Unknown paths get Flask's own 404 page.
