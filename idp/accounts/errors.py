"""Domain errors of the accounts part; each carries a catalog message key.

The web layer shows ``key`` (with ``params``) next to the field it names.
"""

from __future__ import annotations

from typing import Any


class AccountError(Exception):
    """A citizen's request the accounts domain refuses, with a message key."""

    field: str | None = None

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params


class FormInvalid(AccountError):
    """Several problems with one form, in the form's order."""

    def __init__(self, errors: list[AccountError]) -> None:
        super().__init__("form.invalid")
        self.errors = errors


class InvalidEmail(AccountError):
    field = "email"


class ConsentMissing(AccountError):
    field = "privacy_consent"


class PasswordRejected(AccountError):
    field = "password"


class AccountExists(AccountError):
    """An operator tried to create an account for a registered address."""


class LoginFailed(AccountError):
    """Wrong email or password (never says which)."""


class LoginBlocked(AccountError):
    """Too many wrong passwords: the citizen must wait ``params["seconds"]``."""

    @property
    def seconds(self) -> int:
        return self.params["seconds"]


class TooManyFlows(AccountError):
    """The client address opened too many flows this minute: retry in ``params["seconds"]``."""

    def __init__(self, seconds: int) -> None:
        super().__init__("flows.too_many", seconds=seconds)

    @property
    def seconds(self) -> int:
        return self.params["seconds"]


class VerificationFailed(AccountError):
    field = "code"


class ResendTooSoon(AccountError):
    """A verification mail went out a moment ago."""


class ResetInvalid(AccountError):
    """The reset link is unknown, used or expired."""
