"""Plain Starlette app of the route tests (`routes_starlette:app`, under
`-k uvicorn.workers.UvicornWorker`), for every interpreter: Starlette is pure Python, where
FastAPI needs pydantic-core wheels. Typed and plain path parameters, a path converter, a
POST-only route (GET gives 405), and a Mount with its own routes."""

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from testready import mark_ready


async def index(request):
    return PlainTextResponse("index")


async def item(request):
    return PlainTextResponse(f"item {request.path_params['id']}")


async def hello(request):
    return PlainTextResponse(f"hello {request.path_params['name']}")


async def files(request):
    return PlainTextResponse(f"file {request.path_params['p']}")


async def only_post(request):
    return PlainTextResponse("posted")


async def api_user(request):
    return PlainTextResponse(f"user {request.path_params['user_id']}")


app = Starlette(
    routes=[
        Route("/", index),
        Route("/items/{id:int}", item),
        Route("/hello/{name}", hello),
        Route("/files/{p:path}", files),
        Route("/only-post", only_post, methods=["POST"]),
        Mount("/api", routes=[Route("/users/{user_id}", api_user)]),
    ]
)

mark_ready()
