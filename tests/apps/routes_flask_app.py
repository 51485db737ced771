"""The route tests' Flask app as a module-level object (`routes_flask_app:app`), and the same app
behind werkzeug's ProxyFix (`routes_flask_app:proxied`): the callable Gunicorn serves is then
not the Flask object, whose routes the agent must still find."""

from routes_flask import create_app
from testready import mark_ready
from werkzeug.middleware.proxy_fix import ProxyFix

app = create_app(ready=False)
proxied = ProxyFix(app, x_for=1, x_proto=1)
# Only now: a worker marked ready has an app to find.
mark_ready()
