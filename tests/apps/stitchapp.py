"""Two services in one app file, for the same-host stitching test: the frontend's routes call
the backend's /b route many times, with urllib (a new connection per call) or with one
http.client keep-alive connection, and no propagation header, so only the socket pair can join
each backend span to the call that caused it."""
import http.client
import urllib.request

from flask import Flask
from testready import mark_ready

app = Flask(__name__)


@app.route("/b")
def backend():
    return "ok"


@app.route("/fresh/<int:port>/<case>/<int:n>")
def fresh_connections(port, case, n):
    for _ in range(n):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/b?case={case}").read()
    return str(n)


@app.route("/keepalive/<int:port>/<case>/<int:n>")
def one_connection(port, case, n):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(n):
        c.request("GET", f"/b?case={case}")
        c.getresponse().read()
    c.close()
    return str(n)


mark_ready()
