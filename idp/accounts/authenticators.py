"""The ways a citizen proves something, in one registry.

Each :class:`Authenticator` says what it proves (its RFC 8176 ``amr``), whether it
is a second factor that can raise a session's level, and how it is answered: a
form on an idp page (TOTP code, passkey, recovery code) or a redirect to a
service elsewhere (the eID next, later a wallet). The step-up and re-authentication
pages offer what :meth:`Registry.offered` returns for the bindings the acr policy
counts, and check an answer with :meth:`Registry.check`; neither names a method.

The login page offers every authenticator that ``signs_in``: its part is
``templates/authenticators/<name>_sign_in.html``, or, for a redirect method without
one, a button to its ``start`` address. A new way in registers an
:class:`Authenticator` with :data:`REGISTRY` and adds its page parts as
``templates/authenticators/<name>.html`` (a form, or a link to its ``start`` address).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from idp.accounts import passkeys, recovery_codes, totp
from idp.accounts.factors import FactorError
from idp.db import factors as store
from idp.db.models import Account, SecondFactor
from idp.keys.secret import CodeDigests
from idp.keys.secretbox import SecretBox

FORM = "form"  # answered on an idp page
REDIRECT = "redirect"  # answered at another service, which sends the browser back


@dataclass(frozen=True)
class Keys:
    """What checking an answer may need: the factor secrets' box, the issuer (passkeys'
    relying party), and the keyed digests of one-time codes."""

    box: SecretBox
    issuer: str
    digests: CodeDigests


Check = Callable[[Session, Account, Mapping[str, str], Keys], SecondFactor | None]
Prepare = Callable[[Session, Account, Keys], dict[str, Any]]


@dataclass(frozen=True)
class Authenticator:
    """One way to prove something.

    ``name`` is its form value and the name of its page part; ``factor_kind`` the kind
    of :class:`SecondFactor` row it answers with (None: not a stored factor);
    ``raises_level`` whether, as a second factor, it can lift a session's acr;
    ``signs_in`` whether the login page offers it as a way in (``label``: the message key
    of its button, for a redirect method);
    ``answer_field`` the page element its errors attach to; ``check`` returns the factor
    an answer proves (None: wrong); ``usable`` says whether the account can answer with
    it now, beyond having the factor (e.g. recovery codes left); ``prepare`` gives what
    its page part needs (a passkey challenge); ``start`` is where a redirect method
    begins.
    """

    name: str
    amr: str
    interaction: str = FORM
    factor_kind: str | None = None
    raises_level: bool = False
    signs_in: bool = False
    label: str | None = None
    answer_field: str = "code"
    check: Check | None = None
    usable: Callable[[Session, int], bool] | None = None
    prepare: Prepare | None = None
    start: str | None = None


class Registry:
    """The authenticators the service knows, in the order pages offer them."""

    def __init__(self) -> None:
        self._by_name: dict[str, Authenticator] = {}

    def register(self, authenticator: Authenticator) -> None:
        """Add ``authenticator``; a name is registered once."""
        if authenticator.name in self._by_name:
            raise ValueError(f"authenticator {authenticator.name!r} is registered already")
        self._by_name[authenticator.name] = authenticator

    def get(self, name: str) -> Authenticator | None:
        """The authenticator called ``name``, or None."""
        return self._by_name.get(name)

    def __iter__(self) -> Iterator[Authenticator]:
        return iter(self._by_name.values())

    def sign_in(self) -> tuple[Authenticator, ...]:
        """The ways in the login page offers, in order."""
        return tuple(method for method in self if method.signs_in)

    def offered(
        self, session: Session, account_id: int, bindings: frozenset[str] | None = None
    ) -> tuple[Authenticator, ...]:
        """The second factors the account can answer with now whose binding is one of
        ``bindings`` (None: any binding)."""
        kinds = {
            kind
            for kind, binding in store.kinds_and_bindings(session, account_id)
            if bindings is None or binding in bindings
        }
        return tuple(
            method
            for method in self
            if method.raises_level
            and method.factor_kind in kinds
            and (method.usable is None or method.usable(session, account_id))
        )

    def prepared(
        self, session: Session, account: Account, methods: tuple[Authenticator, ...], keys: Keys
    ) -> dict[str, Any]:
        """What the page parts of ``methods`` need, merged."""
        context: dict[str, Any] = {}
        for method in methods:
            if method.prepare is not None:
                context.update(method.prepare(session, account, keys))
        return context

    def check(
        self, session: Session, account: Account, name: str, form: Mapping[str, str], keys: Keys
    ) -> SecondFactor:
        """The factor that accepts the answer in ``form`` for the method ``name``, used now;
        raise FactorError if none does (TooManyAttempts while paused)."""
        method = self.get(name)
        if method is None or method.check is None:
            raise FactorError("unknown method")
        factor = method.check(session, account, form, keys)
        if factor is None:
            raise FactorError("wrong code")
        return factor

    def answer_field(self, name: str) -> str:
        """The page element an error for method ``name`` belongs to."""
        method = self.get(name)
        return method.answer_field if method is not None else "code"


def _totp(
    session: Session, account: Account, form: Mapping[str, str], keys: Keys
) -> SecondFactor | None:
    return totp.verify(session, account, form.get("code", ""), keys.box)


def _recovery(
    session: Session, account: Account, form: Mapping[str, str], keys: Keys
) -> SecondFactor | None:
    return recovery_codes.use(session, account, form.get("code", ""), keys.digests)


def _passkey(
    session: Session, account: Account, form: Mapping[str, str], keys: Keys
) -> SecondFactor | None:
    return passkeys.finish_authentication(
        session, account, form.get("flow", ""), form.get("credential", ""), keys.issuer
    )


def _passkey_challenge(session: Session, account: Account, keys: Keys) -> dict[str, Any]:
    flow, options = passkeys.begin_authentication(session, account, keys.issuer)
    return {"passkey_flow": flow, "passkey_options": options}


def _codes_left(session: Session, account_id: int) -> bool:
    return recovery_codes.remaining(session, account_id) > 0


REGISTRY = Registry()
PASSWORD = Authenticator("password", "pwd", signs_in=True, answer_field="password")
REGISTRY.register(PASSWORD)
REGISTRY.register(Authenticator("totp", "otp", factor_kind="totp", raises_level=True, check=_totp))
REGISTRY.register(
    Authenticator(
        "passkey",
        passkeys.PASSKEY_AMR,
        factor_kind="passkey",
        raises_level=True,
        answer_field="passkey",
        check=_passkey,
        prepare=_passkey_challenge,
    )
)
REGISTRY.register(
    Authenticator(
        "recovery",
        "otp",
        factor_kind="recovery_codes",
        raises_level=True,
        answer_field="recovery_code",
        check=_recovery,
        usable=_codes_left,
    )
)
