"""HTTPS both ways, for pytracer's TLS test (tests/tests/tls.rs), served by Gunicorn.

The same app runs twice: as a plain-HTTP front whose routes call the HTTPS one (with requests
and with http.client, the certificate the test made trusted through TLS_CA_FILE), and as the
HTTPS server itself (Gunicorn --certfile/--keyfile), which answers /backend/<name>. The calls live
in helpers so the test can assert the Python caller of their spans.
"""

import asyncio
import http.client
import os
import socket
import ssl

from flask import Flask, request
from testready import mark_ready

app = Flask(__name__)

mark_ready()


def ca_file():
    return os.environ["TLS_CA_FILE"]


def call_requests(port):
    # Imported here: the chroots' virtualenvs (tls.rs's chroot test) have no requests.
    import requests

    r = requests.get(f"https://localhost:{port}/backend/requests", verify=ca_file(), timeout=10)
    return r.status_code, r.text


def call_propagating(port, traceparent):
    # The app propagates context itself: the callee's span joins the trace it names.
    import requests

    r = requests.get(
        f"https://localhost:{port}/backend/propagated", headers={"traceparent": traceparent}, verify=ca_file(), timeout=10
    )
    return r.status_code, r.text


def call_http_client(port, host):
    ctx = ssl.create_default_context(cafile=ca_file())
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
    try:
        conn.request("GET", "/backend/http-client?x=1")
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def call_wrapped_first(port):
    # Wrapped before it connects (SSLSocket.connect): libssl gets the socket before the kernel
    # side follows it.
    ctx = ssl.create_default_context(cafile=ca_file())
    with ctx.wrap_socket(socket.socket(), server_hostname="localhost") as s:
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET /backend/wrapped-first HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode()


@app.get("/call/wrapped-first")
def via_wrapped_first():
    return call_wrapped_first(int(request.args["port"]))


async def call_asyncio(port):
    # asyncio's TLS is an SSLObject over memory BIOs: libssl never touches the socket.
    ctx = ssl.create_default_context(cafile=ca_file())
    reader, writer = await asyncio.open_connection("localhost", port, ssl=ctx)
    writer.write(f"GET /backend/asyncio HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer.split(b"\r\n", 1)[0].decode()


@app.get("/call/asyncio")
def via_asyncio():
    return asyncio.run(call_asyncio(int(request.args["port"])))


@app.get("/call/requests")
def via_requests():
    status, text = call_requests(int(request.args["port"]))
    return f"{status} {text}"


@app.get("/call/propagating")
def via_propagating():
    status, text = call_propagating(int(request.args["port"]), request.args["traceparent"])
    return f"{status} {text}"


@app.get("/call/http-client")
def via_http_client():
    # host: a chroot's /etc/hosts may give localhost ::1 first, where the server does not listen.
    status, text = call_http_client(int(request.args["port"]), request.args.get("host", "localhost"))
    return f"{status} {text}"


@app.get("/backend/<name>")
def backend(name):
    return f"hello {name}", 201
