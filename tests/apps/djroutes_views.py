"""Views of the route tests' Django project: plain functions, a functools.wraps-decorated one
(require_http_methods, which answers 405 itself), and a class-based View with get and post."""

import functools

from django.http import HttpResponse
from django.views import View
from django.views.decorators.http import require_http_methods


def _text(body, status=200):
    return HttpResponse(body, status=status, content_type="text/plain")


def traced(view):
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        return view(request, *args, **kwargs)

    return wrapper


def index(request):
    return _text("index")


def health(request):
    return _text("ok")


def by_int(request, n):
    return _text(f"int {n}")


def by_str(request, s):
    return _text(f"str {s}")


def by_slug(request, slug):
    return _text(f"slug {slug}")


def by_uuid(request, u):
    return _text(f"uuid {u}")


def by_path(request, p):
    return _text(f"path {p}")


def by_year(request, year):
    return _text(f"year {year}")


def archive(request, year):
    return _text(f"archive {year}")


@traced
def decorated(request):
    return _text("decorated")


@require_http_methods(["POST"])
def only_post(request):
    return _text("posted")


def shop_index(request):
    return _text("shop")


def shop_item(request, item_id):
    return _text(f"shop item {item_id}")


def shop_review(request, item_id, review):
    return _text(f"review {item_id} {review}")


def listed(request):
    return _text("listed")


class ItemView(View):
    def get(self, request, item_id):
        return _text(f"get {item_id}")

    def post(self, request, item_id):
        return _text(f"post {item_id}", status=201)
