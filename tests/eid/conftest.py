"""The eID simulator on a free loopback port (uvicorn in a thread), a connector pointed at
it through the settings, and a citizen's browser that follows the connector's redirect
and presses a button on the simulator's page, all over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import uvicorn

from idp.eid.connector import EidStart
from idp.eid.oidc import OidcConnector
from idp.eid.simulator import SimulatedClient, Simulator
from idp.settings import EID_SIMULATOR_PATH, Settings
from tests.conftest import free_port, on_own_loop

CLIENT_ID = "idp-test"
CLIENT_SECRET = "a-client-secret-for-tests"
REDIRECT_URI = "http://127.0.0.1:8000/eid/callback"


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Await ``coroutine`` on an event loop of its own, as a worker's would."""
    return on_own_loop(coroutine)


class SimulatorServer:
    """A simulator served by uvicorn on a loopback port, in a thread."""

    def __init__(self, simulator: Simulator, port: int) -> None:
        self.simulator = simulator
        self.issuer = simulator.issuer
        config = uvicorn.Config(
            simulator.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> SimulatorServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the eID simulator did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def simulator_issuer(port: int) -> str:
    return f"http://127.0.0.1:{port}{EID_SIMULATOR_PATH}"


def secret_client(**changes: Any) -> SimulatedClient:
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "redirect_uris": (REDIRECT_URI,),
        "secret": CLIENT_SECRET,
    }
    values.update(changes)
    return SimulatedClient(**values)


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    """The eID simulator, knowing the test client (client_secret_basic)."""
    port = free_port()
    with SimulatorServer(
        Simulator(simulator_issuer(port), [secret_client()], slow_seconds=1.5), port
    ) as server:
        yield server


def eid_settings(issuer: str, **overrides: Any) -> Settings:
    """Settings naming ``issuer`` as the eID service, with the test client."""
    values: dict[str, Any] = {
        "eid_issuer": issuer,
        "eid_client_id": CLIENT_ID,
        "eid_client_secret": CLIENT_SECRET,
    }
    values.update(overrides)
    return Settings.from_env({}, **values)


@pytest.fixture
def connector(simulator: SimulatorServer) -> OidcConnector:
    """The OpenID Connect connector the settings describe, pointed at the simulator."""
    return OidcConnector.from_settings(eid_settings(simulator.issuer))


@dataclass
class Form:
    """A form on a page: where it goes, what a browser would send of it (hidden and text
    fields, checked radios, selected options), its submit buttons by their text."""

    action: str = ""
    values: dict[str, str] = field(default_factory=dict)
    buttons: dict[str, tuple[str, str]] = field(default_factory=dict)


class _FormReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.form = Form()
        self._button: dict[str, str | None] | None = None
        self._select: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        name = found.get("name") or ""
        if tag == "form":
            self.form.action = found.get("action") or ""
        elif tag == "input" and _sent(found):
            self.form.values[name] = found.get("value") or ""
        elif tag == "select":
            self._select = name
        elif tag == "option" and self._select is not None:
            if self._select not in self.form.values or "selected" in found:
                self.form.values[self._select] = found.get("value") or ""
        elif tag == "button":
            self._button, self._text = found, []

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        if tag == "button" and self._button is not None:
            name, value = self._button.get("name") or "", self._button.get("value") or ""
            self.form.buttons["".join(self._text).strip()] = (name, value)
            self._button = None


def _sent(attrs: dict[str, str | None]) -> bool:
    """Whether a browser sends this input with the form (buttons aside)."""
    kind = attrs.get("type")
    return kind in ("hidden", "text") or (kind == "radio" and "checked" in attrs)


def read_form(html: str) -> Form:
    reader = _FormReader()
    reader.feed(html)
    return reader.form


class Browser:
    """A citizen's browser at the simulator: follows the authorization URL, presses a
    button (found by its text, as a person would) and returns the callback's parameters."""

    def __init__(self) -> None:
        self.http = httpx.Client(timeout=10)

    def page(self, url: str, **query: str) -> httpx.Response:
        extra = "".join(f"&{k}={v}" for k, v in query.items())
        return self.http.get(url + extra)

    def press(
        self,
        url: str,
        button: str = "Erika Mustermann",
        *,
        card: str = "1",
        hostile: str | None = None,
        view: str | None = None,
        fields: dict[str, str] | None = None,
    ) -> dict[str, str]:
        query = {k: v for k, v in (("hostile", hostile), ("view", view)) if v}
        page = self.page(url, **query)
        assert page.status_code == 200, page.text
        form = read_form(page.text)
        name, value = form.buttons[button]
        answer = self.http.post(
            form.action, data={**form.values, "card": card, **(fields or {}), name: value}
        )
        assert answer.status_code == 303, answer.text
        return dict(parse_qsl(urlsplit(answer.headers["location"]).query))


@pytest.fixture
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.http.close()


def identify(
    connector: OidcConnector, browser: Browser, button: str = "Erika Mustermann", **options: Any
) -> tuple[dict[str, str], EidStart]:
    """Start at the connector, press ``button`` at the simulator: the callback's
    parameters and the started identification."""
    begun = run(connector.start(REDIRECT_URI, locale=options.pop("locale", None)))
    return browser.press(begun.url, button, **options), begun
