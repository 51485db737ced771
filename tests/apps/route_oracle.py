"""The route tests' oracle: what an app's own framework, and OpenTelemetry's own instrumentation,
say the route and handler of each request are. pytracer reads the same route tables from
outside the process; tests/tests/routes.rs asserts its spans equal what this prints.

Run with the interpreter (and virtualenv) of the server under test, from tests/apps:

    python route_oracle.py APP [--otel] METHOD PATH [METHOD PATH ...]
    python route_oracle.py APP --routes

APP is the spec Gunicorn is given: `module:attr` or `module:factory()`. The served object is
unwrapped through `.app` (ProxyFix and other middlewares) down to a Flask, Django or Starlette
/FastAPI application.

For each (METHOD, PATH) one JSON line, in order:

    {"method": "GET", "path": "/c/int/5", "framework": "flask",
     "router": {"outcome": "match", "route": "/c/int/<int:value>",
                "function": "conv_int", "file": "/…/routes_flask.py", "line": 33},
     "otel": {"http.route": "/c/int/<int:value>", "name": "GET /c/int/<int:value>", "status": 200}}

- `router`: the framework's own router, without running the app:
  Flask `url_map.bind(...).match(path, method=..., return_rule=True)`, Django
  `django.urls.resolve(path).route`, Starlette/FastAPI `route.matches(scope)` over
  `app.routes` (FastAPI's included routers flattened with `iter_route_contexts`) the way
  opentelemetry-instrumentation-starlette/fastapi walk them: the first full match wins, else the
  last partial one (path matched, method not: 405), so a Mount's route is the Mount's own path.
  `outcome` is `match`, `not_found`, `method_not_allowed` (route set, no function: the view does
  not run) or `redirect` (Werkzeug's strict slashes; no route). `function`/`file`/`line` are the
  view's `__qualname__`, `__code__.co_filename` and `co_firstlineno` after `inspect.unwrap`; for a
  class-based view, the method serving that HTTP method (HEAD falling back to `get`); null when
  no view runs.
- `otel` (only with --otel): the request driven through the framework's test client with
  OpenTelemetry's instrumentation (FlaskInstrumentor, DjangoInstrumentor, FastAPIInstrumentor or
  StarletteInstrumentor) and an in-memory exporter; `http.route` and `name` of the one finished
  server span (`http.route` null when the span has none), and the response status.

With --routes, one JSON object listing the app's routes as `pytracer routes --json` does:
`{"framework": ..., "routes": [{"route", "methods", "function", "file", "line"}], "skipped": []}`,
Flask from `app.url_map.iter_rules()` (methods sorted; a class-based view one entry per method
it implements, methods = [that method]), Django from the URLconf's patterns, flattened, Starlette
from `app.routes`.
"""

import importlib
import inspect
import json
import os
import sys


def load(spec):
    module_name, _, attr = spec.partition(":")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    module = importlib.import_module(module_name)
    attr = attr or "application"
    if attr.endswith("()"):
        return getattr(module, attr[:-2])()
    return getattr(module, attr)


def framework_of(obj):
    """(framework, app) of the served object, unwrapping middlewares that keep the app in .app."""
    for _ in range(10):
        mod = type(obj).__module__
        names = [c.__module__ + "." + c.__name__ for c in type(obj).__mro__]
        if "flask.app.Flask" in names or "flask.sansio.app.App" in names:
            return "flask", obj
        if "django.core.handlers.wsgi.WSGIHandler" in names:
            return "django", obj
        if "fastapi.applications.FastAPI" in names:
            return "fastapi", obj
        if "starlette.applications.Starlette" in names:
            return "starlette", obj
        inner = getattr(obj, "app", None)
        if inner is None:
            raise SystemExit(f"unknown application type {mod}.{type(obj).__name__}")
        obj = inner
    raise SystemExit("too many wrappers")


def code_of(fn):
    if fn is None:
        return {"function": None, "file": None, "line": None}
    fn = inspect.unwrap(fn)
    code = fn.__code__
    return {"function": fn.__qualname__, "file": code.co_filename, "line": code.co_firstlineno}


def class_method(cls, method, fallback):
    """The method of a class-based view serving `method`: Flask's MethodView and Django's View
    both look up the lower-cased name, HEAD falling back to get."""
    m = getattr(cls, method.lower(), None)
    if m is None and method == "HEAD":
        m = getattr(cls, "get", None)
    return m if m is not None else getattr(cls, fallback, None)


# --- Flask ---------------------------------------------------------------------------------------


def flask_view(app, endpoint, method):
    view = app.view_functions[endpoint]
    cls = getattr(view, "view_class", None)
    if cls is not None:
        return class_method(cls, method, "dispatch_request")
    return view


def flask_route(app, method, path):
    from werkzeug.exceptions import MethodNotAllowed, NotFound
    from werkzeug.routing import RequestRedirect

    adapter = app.url_map.bind("localhost", url_scheme="http")
    try:
        rule, _ = adapter.match(path, method=method, return_rule=True)
    except RequestRedirect:
        return {"outcome": "redirect", "route": None, **code_of(None)}
    except MethodNotAllowed:
        return {"outcome": "method_not_allowed", "route": None, **code_of(None)}
    except NotFound:
        return {"outcome": "not_found", "route": None, **code_of(None)}
    return {"outcome": "match", "route": rule.rule, **code_of(flask_view(app, rule.endpoint, method))}


def flask_routes(app):
    out = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        cls = getattr(view, "view_class", None)
        if cls is not None and getattr(cls, "methods", None):
            for m in sorted(cls.methods):
                out.append({"route": rule.rule, "methods": [m], **code_of(getattr(cls, m.lower()))})
        else:
            out.append({"route": rule.rule, "methods": sorted(rule.methods or []), **code_of(view)})
    return out


def flask_driver(app):
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    provider, exporter = otel_provider()
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    client = app.test_client()

    def drive(method, path):
        exporter.clear()
        status = client.open(path, method=method, follow_redirects=False).status_code
        return server_span(exporter, status)

    return drive


# --- Django --------------------------------------------------------------------------------------


def django_view(func, method):
    cls = getattr(func, "view_class", None)
    if cls is not None:
        return class_method(cls, method, "http_method_not_allowed")
    return func


def django_route(method, path):
    from django.urls import Resolver404, resolve

    try:
        match = resolve(path)
    except Resolver404:
        return {"outcome": "not_found", "route": None, **code_of(None)}
    return {"outcome": "match", "route": match.route, **code_of(django_view(match.func, method))}


def django_routes():
    from django.urls import URLPattern, URLResolver, get_resolver

    out = []

    def walk(patterns, prefix):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                cls = getattr(p.callback, "view_class", None)
                route = prefix + str(p.pattern)
                if cls is not None:
                    for m in cls.http_method_names:
                        if m != "options" and hasattr(cls, m):
                            out.append({"route": route, "methods": [m.upper()], **code_of(getattr(cls, m))})
                else:
                    out.append({"route": route, "methods": None, **code_of(p.callback)})

    walk(get_resolver().url_patterns, "")
    return out


def django_driver():
    from django.test import Client
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    provider, exporter = otel_provider()
    # Adds its middleware to settings.MIDDLEWARE; the test client's handler loads the middleware
    # chain at its first request, so it has it even though the app's own handler was made before.
    DjangoInstrumentor().instrument(tracer_provider=provider)
    client = Client()

    def drive(method, path):
        exporter.clear()
        status = client.generic(method, path).status_code
        return server_span(exporter, status)

    return drive


# --- Starlette / FastAPI -------------------------------------------------------------------------


def flat_routes(routes):
    """FastAPI 0.137+ nests include_router()'s routes under tree nodes without a path; its
    iter_route_contexts flattens them (what the OTel FastAPI instrumentation walks)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return list(routes)
    return list(iter_route_contexts(routes))


def endpoint_of(route):
    ep = getattr(route, "endpoint", None)
    if ep is None:
        ep = getattr(getattr(route, "original_route", None), "endpoint", None)
    return ep


def starlette_endpoint(routes, scope):
    """The endpoint that serves `scope`, through Mounts (the function that runs)."""
    from starlette.routing import Match, Mount

    for route in flat_routes(routes):
        inner = getattr(route, "original_route", route)
        match, child = route.matches(scope)
        if match == Match.FULL:
            if isinstance(inner, Mount):
                return starlette_endpoint(inner.routes, {**scope, **child})
            return endpoint_of(route)
    return None


def starlette_route(app, method, path):
    from starlette.routing import Match

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "app": app,
    }
    route, full = None, False
    for r in flat_routes(app.routes):
        match, _ = r.matches(scope)
        if match == Match.FULL:
            route, full = r.path, True
            break
        if match == Match.PARTIAL:
            route = r.path
    if route is None:
        return {"outcome": "not_found", "route": None, **code_of(None)}
    if not full:
        return {"outcome": "method_not_allowed", "route": route, **code_of(None)}
    return {"outcome": "match", "route": route, **code_of(starlette_endpoint(app.routes, scope))}


def starlette_routes(app):
    from starlette.routing import Mount

    out = []

    def walk(routes, prefix):
        for r in flat_routes(routes):
            inner = getattr(r, "original_route", r)
            if isinstance(inner, Mount):
                walk(inner.routes, prefix + inner.path)
                continue
            methods = getattr(inner, "methods", None)
            out.append(
                {
                    "route": prefix + r.path,
                    "methods": sorted(methods) if methods else None,
                    **code_of(endpoint_of(r)),
                }
            )

    walk(app.routes, "")
    return out


def starlette_driver(framework, app):
    from starlette.testclient import TestClient

    provider, exporter = otel_provider()
    if framework == "fastapi":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    else:
        from opentelemetry.instrumentation.starlette import StarletteInstrumentor

        StarletteInstrumentor.instrument_app(app, tracer_provider=provider)
    client = TestClient(app, follow_redirects=False)

    def drive(method, path):
        exporter.clear()
        status = client.request(method, path).status_code
        return server_span(exporter, status)

    return drive


# --- OpenTelemetry -------------------------------------------------------------------------------


def otel_provider():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def server_span(exporter, status):
    from opentelemetry.trace import SpanKind

    servers = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    if len(servers) != 1:
        raise SystemExit(f"expected one server span, got {[s.name for s in servers]}")
    s = servers[0]
    return {"http.route": s.attributes.get("http.route"), "name": s.name, "status": status}


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    spec, rest = argv[1], argv[2:]
    framework, app = framework_of(load(spec))
    if rest == ["--routes"]:
        routes = {"flask": flask_routes, "django": lambda _: django_routes()}.get(framework, starlette_routes)(app)
        print(json.dumps({"framework": framework, "routes": routes, "skipped": []}))
        return
    otel = "--otel" in rest
    rest = [a for a in rest if a != "--otel"]
    if len(rest) % 2:
        raise SystemExit("requests come as METHOD PATH pairs")
    requests = list(zip(rest[::2], rest[1::2]))
    if framework == "flask":
        router = lambda m, p: flask_route(app, m, p)  # noqa: E731
        driver = flask_driver
    elif framework == "django":
        router = django_route
        driver = lambda _: django_driver()  # noqa: E731
    else:
        router = lambda m, p: starlette_route(app, m, p)  # noqa: E731
        driver = lambda a: starlette_driver(framework, a)  # noqa: E731
    drive = driver(app) if otel else None
    # Each request is matched, then driven, in order: a request may change the route table (the
    # app's /admin/add-route), and the next one is matched against the changed table.
    for method, path in requests:
        line = {"method": method, "path": path, "framework": framework, "router": router(method, path)}
        if drive is not None:
            line["otel"] = drive(method, path)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main(sys.argv)
