"""Flask app of pytracer's route tests: one rule per shape the agent's route matcher must get right.

Every Werkzeug converter, a blueprint with a url_prefix, a class-based MethodView, a view behind
a functools.wraps decorator, a rule limited to POST (GET gives 405), a strict-slash rule (/dir
redirects to /dir/), and a rule added while serving. Views are module-level functions so their
__qualname__, file and first line are known; create_app() is the factory Gunicorn can serve as
`routes_flask:create_app()`, and routes_flask_app.py holds the module-level app and its ProxyFix
wrapper. Bodies are fixed and small.
"""

import functools

from flask import Blueprint, Flask, Response, current_app
from flask.views import MethodView
from testready import mark_ready


def _text(body, status=200):
    return Response(body, status=status, mimetype="text/plain")


def traced(view):
    """A decorator as applications write them: functools.wraps keeps the view's name and sets
    __wrapped__, which inspect.unwrap follows back to the view."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        return view(*args, **kwargs)

    return wrapper


def index():
    return _text("index")


def conv_default(value):
    return _text(f"default {value}")


def conv_string(value):
    return _text(f"string {value}")


def conv_int(value):
    return _text(f"int {value}")


def conv_signed(value):
    return _text(f"signed {value}")


def conv_float(value):
    return _text(f"float {value}")


def conv_path(value):
    return _text(f"path {value}")


def conv_uuid(value):
    return _text(f"uuid {value}")


def conv_any(value):
    return _text(f"any {value}")


@traced
def decorated():
    return _text("decorated")


def only_post():
    return _text("posted")


def directory():
    return _text("dir")


def shop_item(item_id):
    return _text(f"shop item {item_id}")


def shop_index():
    return _text("shop")


class ItemView(MethodView):
    def get(self, item_id):
        return _text(f"get {item_id}")

    def post(self, item_id):
        return _text(f"post {item_id}", status=201)


def late(n):
    return _text(f"late {n}")


def add_route():
    """Adds /late/<int:n> while serving. Flask refuses add_url_rule once the app has served a
    request (setup is over), so this does what add_url_rule does itself: a rule in the url_map
    and its view in view_functions, the two tables the agent reads."""
    app = current_app._get_current_object()
    if "late" not in app.view_functions:
        app.url_map.add(app.url_rule_class("/late/<int:n>", endpoint="late", methods=["GET"]))
        app.view_functions["late"] = late
    return _text("added")


def create_app(ready=True):
    """The app; `ready` marks the worker ready once it is built (for Gunicorn's
    `routes_flask:create_app()`; routes_flask_app marks it after assigning its globals)."""
    app = Flask(__name__)
    app.add_url_rule("/", view_func=index)
    app.add_url_rule("/c/default/<value>", view_func=conv_default)
    app.add_url_rule("/c/string/<string(length=2):value>", view_func=conv_string)
    app.add_url_rule("/c/int/<int:value>", view_func=conv_int)
    app.add_url_rule("/c/signed/<int(signed=True):value>", view_func=conv_signed)
    app.add_url_rule("/c/float/<float:value>", view_func=conv_float)
    app.add_url_rule("/c/path/<path:value>", view_func=conv_path)
    app.add_url_rule("/c/uuid/<uuid:value>", view_func=conv_uuid)
    app.add_url_rule("/c/any/<any(a,b):value>", view_func=conv_any)
    app.add_url_rule("/decorated", view_func=decorated)
    app.add_url_rule("/only-post", view_func=only_post, methods=["POST"])
    app.add_url_rule("/dir/", view_func=directory)
    app.add_url_rule("/view/<int:item_id>", view_func=ItemView.as_view("item_view"))
    app.add_url_rule("/admin/add-route", view_func=add_route, methods=["POST"])
    shop = Blueprint("shop", __name__, url_prefix="/shop")
    shop.add_url_rule("/", view_func=shop_index)
    shop.add_url_rule("/items/<int:item_id>", view_func=shop_item)
    app.register_blueprint(shop)
    if ready:
        mark_ready()
    return app
