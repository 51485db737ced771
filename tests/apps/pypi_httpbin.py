"""httpbin (PyPI, Flask), served as `pypi_httpbin:app`: its own app object, unchanged; this module
only tells the harness the worker has imported it (testready)."""

from httpbin import app  # noqa: F401
from testready import mark_ready

mark_ready()
