"""The harness's readiness marker, shared by the test apps.

Each app calls mark_ready() once imported in a worker (or in the master under --preload). The
harness waits for the marker rather than sending a warm-up request, which would count against
--max-requests and show up in traces.
"""

import os


def mark_ready():
    ready_dir = os.environ.get("PYTRACER_TESTAPP_READY_DIR")
    if ready_dir:
        with open(os.path.join(ready_dir, str(os.getpid())), "w"):
            pass
