"""A Flask service, served by Gunicorn, that queries a real MariaDB with the three common drivers:
PyMySQL (pure Python), mysqlclient (MySQLdb, on MariaDB's Connector/C) and mysql-connector-python
(pure Python, with a server-side prepared statement). The test harness starts the server
privately and passes where it listens in PYTRACER_MYSQL_HOST, _PORT, _USER, _PASSWORD and
_DATABASE.

Every call lives in its own small helper below, so that a test can assert the Python caller of
each exit span: keep them that way. Each connection is opened inside the request, so a tracer
attached after start-up sees it whole (greeting included). TLS is off on the client side (the
server offers none either): the tracer reads the plain protocol.
"""

import json
import os

import MySQLdb
import mysql.connector
import pymysql
from flask import Flask, Response
from testready import mark_ready

app = Flask(__name__)


mark_ready()


def _params():
    return {
        "host": os.environ["PYTRACER_MYSQL_HOST"],
        "port": int(os.environ["PYTRACER_MYSQL_PORT"]),
        "user": os.environ["PYTRACER_MYSQL_USER"],
        "password": os.environ["PYTRACER_MYSQL_PASSWORD"],
        "database": os.environ["PYTRACER_MYSQL_DATABASE"],
    }


def pymysql_connect():
    # PyMySQL uses TLS only when given `ssl` arguments.
    return pymysql.connect(**_params())


def pymysql_load(cur, item_id):
    cur.execute("SELECT name FROM items WHERE id = %s", (item_id,))
    return cur.fetchone()


def pymysql_bad(cur):
    cur.execute("SELEC name FROM items")


def mysqlclient_connect():
    p = _params()
    return MySQLdb.connect(host=p["host"], port=p["port"], user=p["user"], password=p["password"], database=p["database"], ssl_mode="DISABLED")


def mysqlclient_load(cur, name):
    cur.execute("SELECT id FROM items WHERE name = %s", (name,))
    return cur.fetchone()


def connector_connect():
    return mysql.connector.connect(**_params(), ssl_disabled=True)


def connector_load(cur, item_id):
    # cursor(prepared=True): COM_STMT_PREPARE once, then COM_STMT_EXECUTE with the id bound.
    cur.execute("SELECT name FROM items WHERE id = %s", (item_id,))
    return cur.fetchone()


def _json(obj, status=200):
    return Response(json.dumps(obj), status=status, mimetype="application/json")


@app.get("/pymysql/<int:item_id>")
def by_pymysql(item_id):
    conn = pymysql_connect()
    try:
        with conn.cursor() as cur:
            row = pymysql_load(cur, item_id)
    finally:
        conn.close()
    return _json({"name": row[0] if row else None})


@app.get("/pymysql-fail")
def pymysql_fail():
    conn = pymysql_connect()
    try:
        with conn.cursor() as cur:
            try:
                pymysql_bad(cur)
            except pymysql.err.ProgrammingError as e:
                return _json({"error": e.args[0]}, status=500)
    finally:
        conn.close()
    return _json({"error": None})


@app.get("/mysqlclient/<name>")
def by_mysqlclient(name):
    conn = mysqlclient_connect()
    try:
        cur = conn.cursor()
        row = mysqlclient_load(cur, name)
    finally:
        conn.close()
    return _json({"id": row[0] if row else None})


@app.get("/connector/<int:item_id>")
def by_connector(item_id):
    conn = connector_connect()
    try:
        cur = conn.cursor(prepared=True)
        first = connector_load(cur, item_id)
        second = connector_load(cur, item_id + 1)
        cur.close()
    finally:
        conn.close()
    return _json({"names": [first[0], second[0]]})
