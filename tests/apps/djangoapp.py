"""A one-file Django project served by Gunicorn in pytracer's interpreter tests.

The handlers are plain functions here so the tests can assert exactly which function, file and
first line handled each request, from outside the process.
"""

from testready import mark_ready

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="pytracer-tests-only",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
)

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402


def article(request, year, slug):
    return JsonResponse({"year": year, "slug": slug})


def health(request):
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("articles/<int:year>/<slug:slug>/", article),
    path("health/", health),
]

application = get_wsgi_application()


mark_ready()
