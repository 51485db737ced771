"""httpbinx (PyPI, FastAPI), served as `pypi_httpbinx:app` under uvicorn's Gunicorn worker: its
own app object, unchanged; this module only tells the harness the worker has imported it."""

from httpbinx import app  # noqa: F401
from testready import mark_ready

mark_ready()
