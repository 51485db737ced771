"""Calls that fail, for pytracer's failed-calls test (tests/tests/failed_calls.rs), served by Gunicorn.

Each route makes one call to a peer the test started (its port in the query string) that fails in
its own way, catches the error, and returns as JSON what the caller lived: its own
time.monotonic_ns() around the call and the exception's class. The calls live in helpers so the
test can assert the Python caller of their spans.
"""

import json
import socket
import time

import psycopg
import redis
import requests
from redis.backoff import NoBackoff
from redis.retry import Retry
from flask import Flask, Response, request
from testready import mark_ready

app = Flask(__name__)


mark_ready()


def call_http(port, timeout):
    return requests.get(f"http://127.0.0.1:{port}/never", timeout=timeout)


def call_pg(port):
    return psycopg.connect(host="127.0.0.1", port=port, user="nobody", dbname="none", connect_timeout=5)


# Connections opened by one request and reused by the next, as a pool would: the test stops their
# server in between.
kept = {}


def call_pg_kept(port):
    if "pg" not in kept:
        kept["pg"] = psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="app", autocommit=True)
    return kept["pg"].execute("SELECT 1").fetchall()


def call_redis_kept(port):
    if "redis" not in kept:
        # No retries: one call is one attempt, as the test counts them.
        kept["redis"] = redis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
    return kept["redis"].get("k")


def call_raw(port):
    # A non-blocking connect whose failure the next send reports (no SO_ERROR asked).
    s = socket.socket()
    try:
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        time.sleep(0.05)
        s.send(b"x")
    finally:
        s.close()


def measured(call):
    start = time.monotonic_ns()
    error = None
    try:
        call()
    except Exception as e:  # the failure is the point: report it
        error = type(e).__name__
    elapsed = time.monotonic_ns() - start
    return Response(json.dumps({"elapsed_ns": elapsed, "error": error}), mimetype="application/json")


def port():
    return int(request.args["port"])


# <case> only names the request for the test.
@app.get("/http/<case>")
def http(case):
    # timeout: "none" for a blocking connect, else seconds (a non-blocking connect and reads).
    t = request.args.get("timeout", "none")
    return measured(lambda: call_http(port(), None if t == "none" else float(t)))


@app.get("/pg/<case>")
def pg(case):
    return measured(lambda: call_pg(port()))


@app.get("/pg-kept/<case>")
def pg_kept(case):
    return measured(lambda: call_pg_kept(port()))


@app.get("/redis-kept/<case>")
def redis_kept(case):
    return measured(lambda: call_redis_kept(port()))


@app.get("/raw/<case>")
def raw(case):
    return measured(lambda: call_raw(port()))
