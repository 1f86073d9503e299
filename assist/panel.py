"""The agent panel: a static page (``assist/web/``) served by ``callwatch serve`` at ``/agent``.

No build step and no framework: one HTML file, one script and one stylesheet, so the panel
ships inside the Python package and works offline on the agent's desktop.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, RedirectResponse

WEB = Path(__file__).parent / "web"
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}


def add_panel_routes(app: FastAPI) -> None:
    @app.get("/agent", include_in_schema=False)
    async def agent_panel() -> FileResponse:
        return FileResponse(WEB / "agent.html", media_type="text/html", headers=_NO_CACHE)

    @app.get("/agent/", include_in_schema=False)
    async def agent_panel_slash() -> RedirectResponse:
        return RedirectResponse("/agent")

    @app.get("/agent/static/{name}", include_in_schema=False)
    async def agent_static(name: str) -> FileResponse:
        path = WEB / name
        # only the panel's own files: no subfolders, no '..', known types
        if "/" in name or name.startswith(".") or path.suffix not in _TYPES or not path.is_file():
            raise HTTPException(status_code=404, detail="not found")
        return FileResponse(path, media_type=_TYPES[path.suffix], headers=_NO_CACHE)


_NO_CACHE = {"Cache-Control": "no-cache"}
