"""Pages that belong to no flow: the start page and the privacy notice."""

from __future__ import annotations

from litestar import Request, Response
from litestar.response import Redirect

from idp.web.handlers import get
from idp.web.rendering import render


@get("/", sync_to_thread=False)
def home() -> Redirect:
    """The service has no start page of its own: the account page is home."""
    return Redirect("/account", status_code=303)


@get("/privacy", sync_to_thread=False)
def privacy(request: Request) -> Response:
    """The privacy notice the registration form links to."""
    return render(request, "privacy.html")


ROUTES = [home, privacy]
