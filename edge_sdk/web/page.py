"""The web view's single page (index.html beside this module: static HTML, CSS and JavaScript).

The page asks for everything else itself: the MJPEG stream into an <img>, and the predictions
through an EventSource on ``api/events``. It passes on a ``?token=`` from its own address, since
neither <img> nor EventSource can send an Authorization header.
"""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def index_html() -> bytes:
    """Return the page's bytes (read once from the installed package)."""
    return resources.files("edge_sdk.web").joinpath("index.html").read_bytes()
