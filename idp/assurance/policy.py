"""The acr policy: a pure, table-driven function from session facts to an eIDAS level.

Nothing here does I/O. The authorization flow builds :class:`SessionFacts`
(``session_facts``), parses what the client asks for (``requested_acr``) and
asks :func:`evaluate` whether the session meets it; the answer says what the
ID token's ``acr`` is, or what the citizen must still do (step-up), or that it
cannot be met. ``amr`` lists the RFC 8176 methods of a session.

Levels and aliases
    ``LOW``, ``SUBSTANTIAL``, ``HIGH`` are the eIDAS URIs
    ``http://eidas.europa.eu/LoA/low|substantial|high``. Requests may use the
    German federation's STORK aliases: ``STORK-QAA-Level-1`` and ``-2`` mean low
    (level 1 has no eIDAS counterpart; low is the least we assert), ``-3``
    substantial, ``-4`` high. A token answers with the value the client asked for.

The table (:data:`DEFAULT_RULES`, replaceable by a JSON file, see
:meth:`Policy.from_json`): each :class:`Rule` names the account proofing
levels it applies to, the methods the session must have used, and, for a
second factor, how that factor must have been bound (``proofing``,
``high_session`` or ``low_session``). The session's level is the highest rule
it matches that is still fresh: a level reached longer ago than its maximum
age (``IDP_ACR_HIGH_MAX_AGE_MINUTES``...) counts as the highest lower level
whose age still allows it.

Requirements and decisions
    ``requested_acr(acr_values, claims, default_acr_values, minimum_acr)``
    -> :class:`Requirement`; ``evaluate(requirement, facts, policy)`` ->
    :class:`Decision` with ``status`` ``met`` | ``step_up`` | ``unmet``. A step-up
    lists alternatives in ``missing`` (``second_factor``, or ``eid`` and
    ``in_person``); ``required`` says whether the flow may go on without it
    (voluntary requests may, with ``Decision.acr``, the best achievable now).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

LOW = "http://eidas.europa.eu/LoA/low"
SUBSTANTIAL = "http://eidas.europa.eu/LoA/substantial"
HIGH = "http://eidas.europa.eu/LoA/high"
LEVELS = (LOW, SUBSTANTIAL, HIGH)  # ascending
ALIASES = {
    "STORK-QAA-Level-1": LOW,
    "STORK-QAA-Level-2": LOW,
    "STORK-QAA-Level-3": SUBSTANTIAL,
    "STORK-QAA-Level-4": HIGH,
}

PROOFING_LEVELS = ("none", "low", "substantial", "high")
BINDINGS = ("proofing", "high_session", "low_session")
# RFC 8176 values of second factors: TOTP and recovery codes (otp), passkeys (hwk, swk).
SECOND_FACTORS = frozenset({"otp", "hwk", "swk"})
METHOD_REQUIREMENTS = ("pwd", "eid", "second_factor")
# Which RFC 8176 methods prove knowledge or possession, for `mfa`. The eID alone is
# both (the card and its PIN).
_KNOWLEDGE = frozenset({"pwd", "pin", "kba"})
_POSSESSION = frozenset({"otp", "hwk", "swk", "sms"})

Missing = Literal["second_factor", "eid", "in_person"]


def canonical(value: str) -> str | None:
    """The eIDAS URI a requested acr value stands for; None if unknown."""
    if value in LEVELS:
        return value
    return ALIASES.get(value)


def rank(acr: str | None) -> int:
    """Position of a level (0 = none, 1 = low ... 3 = high); unknown values rank 0."""
    level = canonical(acr) if acr else None
    return LEVELS.index(level) + 1 if level else 0


@dataclass(frozen=True)
class Rule:
    """One row: accounts proofed at ``proofing`` that used ``methods`` reach ``acr``."""

    acr: str
    proofing: frozenset[str]
    methods: tuple[str, ...]
    # For a "second_factor" method: the bindings that count.
    bindings: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.acr not in LEVELS:
            raise ValueError(f"rule acr must be one of {', '.join(LEVELS)}, got {self.acr!r}")
        if not self.proofing or not self.proofing <= set(PROOFING_LEVELS):
            raise ValueError(f"rule proofing must be among {', '.join(PROOFING_LEVELS)}")
        if not self.methods or not set(self.methods) <= set(METHOD_REQUIREMENTS):
            raise ValueError(f"rule methods must be among {', '.join(METHOD_REQUIREMENTS)}")
        if ("second_factor" in self.methods) != bool(self.bindings):
            raise ValueError("a rule with a second_factor needs bindings, and only then")
        if not self.bindings <= set(BINDINGS):
            raise ValueError(f"rule bindings must be among {', '.join(BINDINGS)}")


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(LOW, frozenset({"low", "substantial", "high"}), ("pwd",)),
    Rule(
        SUBSTANTIAL,
        frozenset({"substantial"}),
        ("pwd", "second_factor"),
        frozenset({"proofing", "high_session"}),
    ),
    Rule(
        HIGH,
        frozenset({"high"}),
        ("pwd", "second_factor"),
        frozenset({"proofing", "high_session"}),
    ),
    Rule(HIGH, frozenset({"high"}), ("eid",)),
    # First use of the eID proofs the account in the same step (it becomes high).
    Rule(HIGH, frozenset({"none", "low", "substantial"}), ("eid",)),
)


@dataclass(frozen=True)
class Policy:
    """The rule table and each level's maximum age (None: as long as the session)."""

    rules: tuple[Rule, ...] = DEFAULT_RULES
    max_age: Mapping[str, timedelta | None] = field(
        default_factory=lambda: {LOW: None, SUBSTANTIAL: None, HIGH: None}
    )

    @classmethod
    def from_json(cls, text: str, max_age: Mapping[str, timedelta | None]) -> Policy:
        """A policy whose table is a JSON list of rows like
        ``{"acr": "...", "proofing": ["high"], "methods": ["pwd", "second_factor"],
        "bindings": ["proofing"]}``; raises ValueError naming the bad row."""
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(rows, list) or not rows:
            raise ValueError("must be a non-empty JSON list of rules")
        rules = []
        for number, row in enumerate(rows, 1):
            try:
                rules.append(
                    Rule(
                        acr=row["acr"],
                        proofing=frozenset(row["proofing"]),
                        methods=tuple(row["methods"]),
                        bindings=frozenset(row.get("bindings", ())),
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"rule {number}: {exc}") from None
        return cls(rules=tuple(rules), max_age=dict(max_age))

    def acr_values_supported(self) -> list[str]:
        """The values this policy can assert, and their aliases (for discovery).

        A level is assertable when some rule reaches it or a higher one (a higher
        level satisfies a request for a lower one).
        """
        top = max(rank(rule.acr) for rule in self.rules)
        levels = LEVELS[:top]
        return [*levels, *(alias for alias, level in ALIASES.items() if level in levels)]


@dataclass(frozen=True)
class Authentication:
    """One method used in the session; ``binding`` is set for second factors."""

    method: str
    at: datetime
    binding: str | None = None


@dataclass(frozen=True)
class SessionFacts:
    """What the policy needs to know about a session and its account."""

    proofing: str
    authentications: tuple[Authentication, ...]
    # Bindings of the second factors the account has enrolled and can use now.
    enrolled: frozenset[str]
    now: datetime


def session_facts(
    proofing: str, methods: Iterable[Mapping[str, Any]], enrolled: Iterable[str], now: datetime
) -> SessionFacts:
    """Facts from an account's proofing level and a LoginSession's ``methods`` entries."""
    return SessionFacts(
        proofing=proofing,
        authentications=tuple(
            Authentication(
                method=entry["method"],
                at=datetime.fromisoformat(entry["at"]),
                binding=entry.get("binding"),
            )
            for entry in methods
        ),
        enrolled=frozenset(enrolled),
        now=now,
    )


def _match_time(rule: Rule, facts: SessionFacts) -> datetime | None:
    """When the session last completed the rule's methods; None if it did not."""
    if facts.proofing not in rule.proofing:
        return None
    times = []
    for needed in rule.methods:
        if needed == "second_factor":
            used = [
                a.at
                for a in facts.authentications
                if a.method in SECOND_FACTORS and a.binding in rule.bindings
            ]
        else:
            used = [a.at for a in facts.authentications if a.method == needed]
        if not used:
            return None
        times.append(max(used))
    # The combination holds from its last step on; the session's own timeouts bound the rest.
    return max(times)


def _fresh_level(policy: Policy, acr: str, reached: datetime, now: datetime) -> int:
    """The highest level up to ``acr`` whose maximum age allows something reached then."""
    for level in range(rank(acr), 0, -1):
        limit = policy.max_age.get(LEVELS[level - 1])
        if limit is None or now - reached <= limit:
            return level
    return 0


def session_rank(facts: SessionFacts, policy: Policy) -> int:
    """The session's level as a rank (0: none), freshness applied."""
    best = 0
    for rule in policy.rules:
        reached = _match_time(rule, facts)
        if reached is not None:
            best = max(best, _fresh_level(policy, rule.acr, reached, facts.now))
    return best


def session_acr(facts: SessionFacts, policy: Policy) -> str | None:
    """The session's acr (an eIDAS URI), or None below low (e.g. email not verified)."""
    level = session_rank(facts, policy)
    return LEVELS[level - 1] if level else None


def refreshed_acr(
    granted: str | None,
    facts: SessionFacts | None,
    login_at: datetime,
    now: datetime,
    policy: Policy,
    *,
    session_alive: bool,
    longest: timedelta,
) -> str | None:
    """The acr of an access token refreshed now from a grant whose tokens said ``granted``.

    Never above ``granted``. With the login session's ``facts`` (its methods and their
    times, the account's proofing now), the level that session has now, freshness
    applied; without them (the session row is gone), ``granted`` as if reached at
    ``login_at`` (the login's time: it was reached then or later), aged the same way.
    A level the policy keeps "as long as the session" is kept at most ``longest`` once
    the session is no longer alive. Low never ages. An alias (STORK) stays an alias.
    """
    top = rank(granted)
    if top == 0:
        return granted
    if not session_alive:
        bounded = {
            acr: longest if age is None and acr != LOW else age
            for acr, age in policy.max_age.items()
        }
        policy = Policy(rules=policy.rules, max_age=bounded)
    if facts is not None:
        level = session_rank(facts, policy)
    else:
        level = _fresh_level(policy, LEVELS[top - 1], login_at, now)
    level = min(top, level)
    if level == top:
        return granted
    if level == 0:
        return None
    if granted in ALIASES:
        return max(alias for alias, acr in ALIASES.items() if acr == LEVELS[level - 1])
    return LEVELS[level - 1]


def amr(facts: SessionFacts) -> list[str]:
    """RFC 8176 ``amr`` of the session, in order of first use, ``mfa`` when two factors."""
    methods = list(dict.fromkeys(a.method for a in facts.authentications))
    used = set(methods)
    if "eid" in used or (used & _KNOWLEDGE and used & _POSSESSION):
        methods.append("mfa")
    return methods


@dataclass(frozen=True)
class Requirement:
    """What a client asks: acr values in preference order, and whether they are essential.

    ``minimum`` is the client's registered floor, always essential.
    ``unknown`` is true when the client asked only for values this service does not know.
    """

    values: tuple[str, ...] = ()
    essential: bool = False
    minimum: str | None = None
    unknown: bool = False

    @property
    def target(self) -> int:
        """The rank a step-up aims for: the least that satisfies the request and the floor."""
        wanted = min((rank(v) for v in self.values), default=0)
        return max(wanted, rank(self.minimum))


def requested_acr(
    acr_values: str | None,
    claims: Mapping[str, Any] | None,
    default_acr_values: Sequence[str] = (),
    minimum_acr: str | None = None,
) -> Requirement:
    """The requirement from a request's ``acr_values`` and ``claims`` (which wins) and the
    client's ``default_acr_values`` (used when the request names none) and minimum."""
    values: list[str] = []
    essential = False
    acr_claim = ((claims or {}).get("id_token") or {}).get("acr")
    if isinstance(acr_claim, Mapping):
        essential = acr_claim.get("essential") is True
        if isinstance(acr_claim.get("values"), list):
            values = [v for v in acr_claim["values"] if isinstance(v, str)]
        elif isinstance(acr_claim.get("value"), str):
            values = [acr_claim["value"]]
    if not values and acr_values:
        values = acr_values.split()
    if not values:
        values = list(default_acr_values)
    known = tuple(dict.fromkeys(v for v in values if canonical(v)))
    if essential and not values:
        known = (LOW,)  # an essential acr with no values: any level we assert
    floor = canonical(minimum_acr) if minimum_acr else None
    return Requirement(
        values=known, essential=essential, minimum=floor, unknown=bool(values) and not known
    )


@dataclass(frozen=True)
class Decision:
    """The answer for one request and session.

    ``status``: ``met``; ``step_up`` (``missing`` lists the alternatives); ``unmet``.
    ``acr``: the value for the ID token if the flow goes on now (None: omit it).
    ``required``: the flow must not go on unless met (essential value or client floor).
    ``description``: a readable reason for ``error_description`` when not met.
    """

    status: Literal["met", "step_up", "unmet"]
    acr: str | None
    required: bool
    missing: tuple[Missing, ...] = ()
    description: str = ""


def _token_acr(requirement: Requirement, level: int) -> str | None:
    """The most preferred requested value the level satisfies, else the session's own."""
    for value in requirement.values:
        if rank(value) <= level:
            return value
    return LEVELS[level - 1] if level else None


def _alternatives(target: int, facts: SessionFacts, policy: Policy) -> tuple[Missing, ...]:
    """What could lift the session to ``target``: a bound second factor, else eID or in person."""
    found: set[Missing] = set()
    for rule in policy.rules:
        if rank(rule.acr) < target:
            continue
        if facts.proofing not in rule.proofing:
            # Another proofing level: only identification (in person) changes it.
            if rank(_proofing_acr(rule.proofing)) > rank(_proofing_acr({facts.proofing})):
                found.add("in_person")
            continue
        if "eid" in rule.methods:
            found.add("eid")
            continue
        if "pwd" in rule.methods and not any(a.method == "pwd" for a in facts.authentications):
            continue  # a password is asked at login, not at step-up
        if "second_factor" in rule.methods:
            if facts.enrolled & rule.bindings:
                found.add("second_factor")
            else:
                # Identification in person binds the factors the citizen has.
                found.add("in_person")
    if "second_factor" in found:
        return ("second_factor",)
    return tuple(m for m in ("eid", "in_person") if m in found)


def useful_bindings(acr: str, facts: SessionFacts, policy: Policy) -> frozenset[str]:
    """Bindings of second factors that can lift this account to ``acr`` (what step-up offers)."""
    target = rank(acr)
    found: set[str] = set()
    for rule in policy.rules:
        if rank(rule.acr) >= target and facts.proofing in rule.proofing:
            found |= rule.bindings
    return frozenset(found)


def _proofing_acr(proofing: Iterable[str]) -> str | None:
    best = max((PROOFING_LEVELS.index(p) for p in proofing), default=0)
    return LEVELS[best - 1] if best else None


def evaluate(requirement: Requirement, facts: SessionFacts, policy: Policy) -> Decision:
    """Whether the session meets the requirement, and if not what would."""
    level = session_rank(facts, policy)
    acr = _token_acr(requirement, level)
    floor_met = level >= rank(requirement.minimum)
    required = (requirement.essential and bool(requirement.values)) or not floor_met
    if requirement.unknown and requirement.essential:
        return Decision(
            "unmet",
            acr,
            True,
            description="none of the requested acr values is supported; see acr_values_supported",
        )
    target = requirement.target
    if level >= target:
        return Decision("met", acr, False)
    wanted = LEVELS[target - 1]
    have = LEVELS[level - 1] if level else "no level"
    missing = _alternatives(target, facts, policy)
    if not missing:
        return Decision(
            "unmet",
            acr,
            required,
            description=f"{wanted} cannot be reached for this account (session: {have})",
        )
    needs = {
        "second_factor": "a second factor",
        "eid": "the eID (online ID card)",
        "in_person": "identification in person",
    }
    return Decision(
        "step_up",
        acr,
        required,
        missing,
        f"{wanted} needs {' or '.join(needs[m] for m in missing)}; the session has {have}",
    )
