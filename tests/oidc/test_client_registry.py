"""The in-process client cache: changes made elsewhere are seen at once on a miss."""

from __future__ import annotations

from idp.oidc.clients import ClientRegistry
from tests.oidc import factories


def test_a_new_client_is_found_on_a_miss(db):
    registry = ClientRegistry(db)
    registry.load()
    info = factories.client(db)  # added by another process after the load
    found = registry.get(info.client_id)
    assert found is not None and found.client_id == info.client_id


def test_a_miss_finds_a_client_another_thread_reloaded_meanwhile(db):
    """The periodic refresh runs in a thread: when it reloads between a request's miss
    and that request's own version check, the check finds nothing new, and the client
    is in the cache all the same."""
    registry = ClientRegistry(db)
    registry.load()
    info = factories.client(db)
    own_check = registry.refresh_if_changed

    def reloaded_meanwhile() -> bool:
        registry.load()  # the other thread's reload, just before this request's check
        return own_check()

    registry.refresh_if_changed = reloaded_meanwhile  # type: ignore[method-assign]
    found = registry.get(info.client_id)
    assert found is not None and found.client_id == info.client_id


def test_an_unknown_client_is_none_and_costs_one_version_check(db, monkeypatch):
    registry = ClientRegistry(db)
    registry.load()
    checks = []
    real = registry.refresh_if_changed
    monkeypatch.setattr(registry, "refresh_if_changed", lambda: checks.append(1) or real())
    assert registry.get("nobody") is None
    assert registry.get("x" * 65) is None  # too long to be a client id: no check
    assert checks == [1]
