"""URLconf of the route tests' Django project: every built-in path() converter and a registered
one, re_path, include() of a module-like list with a namespace, nested twice, include() of a plain
list, and a class-based view."""

from django.urls import include, path, re_path, register_converter

import djroutes_views as v


class FourDigitYear:
    regex = "[0-9]{4}"

    def to_python(self, value):
        return int(value)

    def to_url(self, value):
        return "%04d" % value


register_converter(FourDigitYear, "yyyy")

reviews = [
    path("reviews/<slug:review>/", v.shop_review, name="review"),
]

shop = (
    [
        path("", v.shop_index, name="index"),
        path("items/<int:item_id>/", v.shop_item, name="item"),
        path("items/<int:item_id>/", include((reviews, "reviews"), namespace="reviews")),
    ],
    "shop",
)

urlpatterns = [
    path("", v.index),
    path("health/", v.health),
    path("c/int/<int:n>/", v.by_int),
    path("c/str/<str:s>/", v.by_str),
    path("c/slug/<slug:slug>/", v.by_slug),
    path("c/uuid/<uuid:u>/", v.by_uuid),
    path("c/path/<path:p>", v.by_path),
    path("c/year/<yyyy:year>/", v.by_year),
    re_path(r"^archive/(?P<year>[0-9]{4})/$", v.archive),
    path("decorated/", v.decorated),
    path("only-post/", v.only_post),
    path("shop/", include(shop, namespace="shop")),
    path("listed/", include([path("here/", v.listed)])),
    path("view/<int:item_id>/", v.ItemView.as_view()),
]
