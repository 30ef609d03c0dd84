"""Why an identification with the eID did not succeed: one small hierarchy, raised by any
connector's ``start`` or ``finish`` and rendered by the flows in one place.

Every failure carries ``reason``, a short stable code for the log, the audit event and the
page to show, and a message (``str(failure)``) that says why in words. Neither ever holds
personal data or a secret: they name what was wrong (``wrong_nonce``), not the values.

=========================  ==============================================================
``EidStateInvalid``        the callback belongs to no live flow of this browser: unknown,
                           replayed, expired, another browser's, or started elsewhere
``EidCancelled``           the citizen cancelled at the eID service (``access_denied``)
``EidUpstreamError``       the eID service reported another error, e.g. a blocked PIN or
                           an online function switched off (``code``, see
                           :data:`UPSTREAM_ERROR_CODES`)
``EidUnavailable``         the eID service did not answer in time, or answered 5xx
``EidInvalidResponse``     the eID service answered something that must not be trusted: a
                           bad signature, an unknown key, wrong ``iss``/``aud``/``azp``/
                           ``nonce``, an expired token, missing attributes
=========================  ==============================================================
"""

from __future__ import annotations

# Our codes for what the eID service reports (idp.eid.oidc.ERROR_CODES maps its words
# to these); anything else arrives as ``other``.
ACCESS_DENIED = "access_denied"
LOGIN_REQUIRED = "login_required"
PIN_BLOCKED = "pin_blocked"
ONLINE_FUNCTION_INACTIVE = "online_function_inactive"
CARD_INVALID = "card_invalid"
OTHER = "other"
UPSTREAM_ERROR_CODES = (
    ACCESS_DENIED,
    LOGIN_REQUIRED,
    PIN_BLOCKED,
    ONLINE_FUNCTION_INACTIVE,
    CARD_INVALID,
    OTHER,
)


class EidFailure(Exception):
    """An identification with the eID ended without a result."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


class EidStateInvalid(EidFailure):
    """The callback's ``state`` matches no live flow started in this browser."""


class EidUpstreamError(EidFailure):
    """The eID service ended the identification with an error it reported (``code``)."""

    def __init__(self, code: str, description: str = "") -> None:
        super().__init__(code, description or f"the eID service reported {code}")
        self.code = code


class EidCancelled(EidUpstreamError):
    """The citizen cancelled at the eID service."""

    def __init__(self, description: str = "") -> None:
        super().__init__(ACCESS_DENIED, description or "the citizen cancelled")


class EidUnavailable(EidFailure):
    """The eID service is down, failing (5xx) or too slow."""


class EidInvalidResponse(EidFailure):
    """The eID service's answer failed a check; ``reason`` names the check."""
