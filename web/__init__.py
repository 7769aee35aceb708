"""The dashboard's static assets (SPEC section 9): plain ES modules, a stylesheet and a vendored
chart library, shipped inside the Python package and served by the API (`api/routers/dashboard.py`).
No build step: what is in `static/` is what the browser runs."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
INDEX_HTML = STATIC_DIR / "index.html"
