"""FastAPI app of the route tests (`routes_fastapi:app`, under `-k uvicorn.workers.UvicornWorker`):
typed and plain path parameters, a path converter, a POST-only route (GET gives 405), an
APIRouter with a prefix, and a Mount of a Starlette sub-app."""

from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse
from starlette.applications import Starlette
from starlette.routing import Route
from testready import mark_ready

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
async def index():
    return "index"


@app.get("/items/{id:int}", response_class=PlainTextResponse)
async def get_item(id: int):
    return f"item {id}"


@app.get("/hello/{name}", response_class=PlainTextResponse)
def hello(name: str):
    return f"hello {name}"


@app.get("/files/{p:path}", response_class=PlainTextResponse)
async def files(p: str):
    return f"file {p}"


@app.post("/only-post", response_class=PlainTextResponse)
async def only_post():
    return "posted"


router = APIRouter(prefix="/api")


@router.get("/users/{user_id}", response_class=PlainTextResponse)
async def api_user(user_id: str):
    return f"user {user_id}"


app.include_router(router)


async def sub_ping(request):
    return PlainTextResponse("pong")


app.mount("/sub", Starlette(routes=[Route("/ping", sub_ping)]))

mark_ready()
