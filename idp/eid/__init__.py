"""Identification with the online function of the ID card (eID), through an upstream.

- :mod:`idp.eid.connector`: the :class:`Connector` interface every upstream implements
  (``start`` -> where to send the browser, ``finish`` -> an :class:`EidResult`), the data
  passed through it, :func:`pseudonym_digest` (the only stored form of a card's
  pseudonym);
- :mod:`idp.eid.errors`: why an identification failed, one class per kind;
- :mod:`idp.eid.oidc`: the OpenID Connect connector (the upstream's claim names mapped
  in one table);
- :mod:`idp.eid.pending`: a started identification kept server-side, single use, bound
  to the browser;
- :mod:`idp.eid.simulator`: a small OpenID Connect provider playing the eID service with
  test persons, for development and tests (``idp eid-simulator``), refused in production.

:func:`connector_for` picks the upstream from the settings. A SAML eID service (BSI
TR-03130, BundID) or an EUDI wallet would be another class implementing
:class:`Connector`, chosen there by its own settings; the flows would not change.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from idp.eid.connector import Connector
from idp.settings import Settings


def connector_for(
    settings: Settings, now: Callable[[], datetime] | None = None
) -> Connector | None:
    """The configured eID upstream, or None when ``IDP_EID_ISSUER`` is empty (eID off);
    ``now`` is the service's clock."""
    if not settings.eid_issuer:
        return None
    from idp.eid.oidc import OidcConnector

    return OidcConnector.from_settings(settings, now)
