"""The dashboard: `GET /` answers its page, `/assets/...` its files, all from the installed
package (web/static). The page calls the public API with the key the user signs in with."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from api.routing import LedgerRoute
from web import INDEX_HTML, STATIC_DIR

# Everything the page loads comes from this origin; nothing is fetched from anywhere else.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

router = APIRouter(route_class=LedgerRoute, include_in_schema=False)


@router.get("/")
def dashboard() -> FileResponse:
    return FileResponse(
        INDEX_HTML,
        media_type="text/html",
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


def mount_dashboard(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/assets", StaticFiles(directory=STATIC_DIR), name="dashboard-assets")
