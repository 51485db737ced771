"""WSGI entry of the route tests' Django project (`djroutes:application`); settings in
djroutes_settings.py, routes in djroutes_urls.py, views in djroutes_views.py."""

import os

from testready import mark_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djroutes_settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()

mark_ready()
