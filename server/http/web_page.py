"""The web page at `/`: plain HTML, CSS and JavaScript shipped in the package (server/http/web), no
build step. It calls the Vision API on the same port."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

WEB = Path(__file__).resolve().parent / "web"


async def index(request: Request) -> Response:
    return FileResponse(WEB / "index.html", media_type="text/html")


def web_routes() -> list[Route | Mount]:
    return [
        Route("/", index, methods=["GET"]),
        Mount("/ui", app=StaticFiles(directory=WEB), name="ui"),
    ]
