"""The "backend" service of pytracer's two-service test app, served by Gunicorn.

It talks to a real PostgreSQL (psycopg 3) and a real Redis (redis-py), both started privately by
the test harness, which passes their addresses in PYTRACER_PG_DSN and PYTRACER_REDIS_URL.

Every database call lives in its own small helper below, one call per helper, so that a test
can assert the Python caller (function, file, line) of each exit span: keep them that way, and
when you move a call, update the line numbers the tests expect (`grep -n CALL backend.py`).
Each connection is opened inside the request, so a tracer attached after start-up sees it whole
(startup message included).
"""

import json
import os

import psycopg
import redis
from flask import Flask, Response
from testready import mark_ready

app = Flask(__name__)


mark_ready()


def _pg():
    return psycopg.connect(os.environ["PYTRACER_PG_DSN"], autocommit=True)


def _redis():
    return redis.Redis.from_url(os.environ["PYTRACER_REDIS_URL"])


def load_item(cur, item_id):
    cur.execute("SELECT name FROM items WHERE id = %s", (item_id,))  # CALL load_item
    row = cur.fetchone()
    return row[0] if row else None


def count_items(conn):
    # No parameters and prepare=False: psycopg sends a simple-protocol Query.
    return conn.execute("SELECT count(*) FROM items WHERE name <> 'gone'", prepare=False).fetchone()[0]  # CALL count_items


def cache_get(r, key):
    return r.get(key)  # CALL cache_get


def cache_set(r, key, value):
    r.set(key, value, ex=60)  # CALL cache_set


def record_hit(r, item_id):
    # Two commands in one pipeline: one write, then two replies.
    pipe = r.pipeline(transaction=False)
    pipe.incr(f"hits:{item_id}")
    pipe.expire(f"hits:{item_id}", 60)
    return pipe.execute()[0]  # CALL record_hit


def run_bad_sql(cur):
    cur.execute("SELEC name FROM items")  # CALL run_bad_sql


def _json(obj, status=200):
    # json.dumps rather than jsonify: tests compare the exact body bytes.
    return Response(json.dumps(obj), status=status, mimetype="application/json")


@app.get("/items/<int:item_id>")
def item(item_id):
    key = f"item:{item_id}"
    with _pg() as conn, conn.cursor() as cur:
        name = load_item(cur, item_id)
        count = count_items(conn)
    if name is None:
        return _json({"id": item_id, "error": "not found"}, status=404)
    r = _redis()
    try:
        cached = cache_get(r, key)
        cache_set(r, key, name)
        hits = record_hit(r, item_id)
    finally:
        r.close()
    return _json(
        {
            "id": item_id,
            "name": name,
            "count": count,
            "cached": cached.decode() if cached is not None else None,
            "hits": hits,
        }
    )


@app.get("/fail-db")
def fail_db():
    with _pg() as conn, conn.cursor() as cur:
        try:
            run_bad_sql(cur)
        except psycopg.Error as e:
            return _json({"error": type(e).__name__, "sqlstate": e.sqlstate}, status=500)
    return _json({"error": "none"})
