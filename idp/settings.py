"""One typed settings object, read once from ``IDP_*`` environment variables.

Every value is parsed and validated at start-up; a bad value raises
:class:`SettingsError` naming the variable, which the CLI prints as one line.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


class SettingsError(ValueError):
    """A configuration value is missing or malformed."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an absolute http(s) URL, e.g. https://id.example.de")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return value.rstrip("/")


def _database_url(value: str) -> str:
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(
            "is not a database URL; use sqlite:///var/idp.db or postgresql+psycopg://user@host/db"
        ) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError("only sqlite and postgresql databases are supported")
    if url.get_backend_name() == "postgresql" and url.get_driver_name() != "psycopg":
        raise ValueError("use the psycopg 3 driver: postgresql+psycopg://...")
    return value


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"must be a whole number, got {value!r}") from None
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}, got {number}")
        return number

    return parse


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return value

    return parse


def _path(value: str) -> Path:
    if not value:
        raise ValueError("must not be empty")
    return Path(value)


def _text(value: str) -> str:
    return value


def _optional_path(value: str) -> Path | None:
    return Path(value) if value else None


def _metrics_token(value: str) -> str:
    if value and len(value) < 16:
        raise ValueError("must be at least 16 characters (or empty to turn /metrics off)")
    return value


def _acr_policy_file(value: str) -> Path | None:
    """An acr policy table in JSON, checked now so a bad table stops the start."""
    if not value:
        return None
    from idp.assurance.policy import Policy

    path = Path(value)
    try:
        Policy.from_json(path.read_text(encoding="utf-8"), {})
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    return path


def _acr_level(value: str) -> str:
    """An eIDAS level (URI, or its STORK alias), as its URI."""
    from idp.assurance.policy import LEVELS, canonical

    level = canonical(value.strip())
    if level is None:
        raise ValueError(f"must be one of {', '.join(LEVELS)} (or a STORK-QAA alias)")
    return level


def _ca_file(value: str) -> Path | None:
    """A PEM file of CA certificates, loaded now so a bad file stops the start."""
    if not value:
        return None
    import ssl

    path = Path(value)
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:  # an OSError too: ask first
        raise ValueError(f"{path} holds no PEM certificate ({exc.reason})") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    return path


def _proxies(value: str) -> str:
    """Proxy addresses or networks, comma-separated, normalised; ``*`` alone trusts any."""
    import ipaddress

    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    if entries == ["*"]:
        return "*"
    trusted = []
    for entry in entries:
        if entry == "*":
            raise ValueError("`*` (trust every address) must stand alone")
        try:
            if "/" in entry:
                trusted.append(str(ipaddress.ip_network(entry, strict=False)))
            else:
                trusted.append(str(ipaddress.ip_address(entry)))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network (CIDR)") from None
    return ",".join(trusted)


# The path under which the eID simulator (idp/eid/simulator.py) serves, its issuer's
# last segment: production refuses an IDP_EID_ISSUER that ends with it.
EID_SIMULATOR_PATH = "/eid-simulator"


def _optional_url(value: str) -> str:
    return _url(value) if value else ""


def _eid_scopes(value: str) -> str:
    scopes = list(dict.fromkeys(value.split()))
    if "openid" not in scopes:
        raise ValueError("must include openid")
    return " ".join(scopes)


def _eid_private_key_file(value: str) -> Path | None:
    """A PEM private key (RSA, or EC on P-256), loaded now so a bad file stops the start."""
    if not value:
        return None
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    path = Path(value)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ValueError(f"{path} holds no unencrypted PEM private key") from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return path
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return path
    raise ValueError(f"{path} must hold an RSA key (2048 bits or more) or an EC key on P-256")


# What an eID result carries (idp.eid.connector.EidResult): the names IDP_EID_CLAIMS maps to.
EID_ATTRIBUTES = (
    "family_name",
    "given_name",
    "birth_family_name",
    "academic_title",
    "birthdate",
    "place_of_birth",
    "address",
    "nationalities",
    "document_type",
    "issuing_state",
)


def _eid_claims(value: str) -> tuple[tuple[str, str], ...]:
    """A JSON object of the upstream's claim names to ours, as pairs (empty: the default)."""
    if not value:
        return ()
    import json

    try:
        table = json.loads(value)
    except ValueError:
        raise ValueError('must be a JSON object, e.g. {"birthName": "birth_family_name"}') from None
    if not isinstance(table, dict) or not table:
        raise ValueError("must be a non-empty JSON object of claim names")
    for theirs, ours in table.items():
        if ours not in EID_ATTRIBUTES:
            raise ValueError(f"{theirs!r} maps to {ours!r}, not one of {', '.join(EID_ATTRIBUTES)}")
    return tuple(table.items())


def setting(env: str, default: Any, parse: Callable[[str], Any], doc: str) -> Any:
    """Declare a field read from the environment variable ``env``."""
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc})


@dataclass(frozen=True, slots=True)
class Settings:
    """The service's configuration. Build it with :meth:`from_env`."""

    issuer: str = setting(
        "IDP_ISSUER",
        "http://localhost:8000",
        _url,
        "Public base URL, the `iss` of every token (a host name: passkeys refuse IP addresses)",
    )
    environment: str = setting(
        "IDP_ENV",
        "development",
        _choice("development", "production"),
        "`development` writes mail to var/mail and allows http issuers",
    )
    database_url: str = setting(
        "IDP_DATABASE_URL",
        "sqlite:///var/idp.db",
        _database_url,
        "SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db",
    )
    keys_dir: Path = setting(
        "IDP_KEYS_DIR", Path("keys"), _path, "Folder of the private signing keys"
    )
    keys_passphrase: str = setting(
        "IDP_KEYS_PASSPHRASE", "", _text, "If set, private key files are encrypted with it"
    )
    id_token_signing_alg: str = setting(
        "IDP_ID_TOKEN_SIGNING_ALG",
        "RS256",
        _choice("RS256", "ES256"),
        "Default ID token algorithm (clients may choose the other)",
    )
    access_token_signing_alg: str = setting(
        "IDP_ACCESS_TOKEN_SIGNING_ALG",
        "ES256",
        _choice("RS256", "ES256"),
        "Algorithm of JWT access tokens",
    )
    host: str = setting("IDP_HOST", "127.0.0.1", _text, "Address `idp serve` binds to")
    port: int = setting("IDP_PORT", 8000, _int(1, 65535), "Port `idp serve` listens on")
    workers: int = setting("IDP_WORKERS", 1, _int(1, 64), "Worker processes of `idp serve`")
    cache_poll_seconds: int = setting(
        "IDP_CACHE_POLL_SECONDS",
        2,
        _int(1, 3600),
        "How often a worker checks whether keys or clients changed",
    )
    session_idle_minutes: int = setting(
        "IDP_SESSION_IDLE_MINUTES",
        30,
        _int(1, 24 * 60),
        "A login session ends after this idle time",
    )
    session_max_hours: int = setting(
        "IDP_SESSION_MAX_HOURS", 12, _int(1, 24 * 30), "A login session ends this long after login"
    )
    staff_session_idle_minutes: int = setting(
        "IDP_STAFF_SESSION_IDLE_MINUTES",
        15,
        _int(1, 24 * 60),
        "A staff member's login session (clerk console) ends after this idle time",
    )
    staff_session_max_hours: int = setting(
        "IDP_STAFF_SESSION_MAX_HOURS",
        10,
        _int(1, 24),
        "A staff member's login session ends this long after login",
    )
    authorization_code_seconds: int = setting(
        "IDP_AUTHORIZATION_CODE_SECONDS",
        60,
        _int(5, 600),
        "Lifetime of an authorization code (single use)",
    )
    access_token_seconds: int = setting(
        "IDP_ACCESS_TOKEN_SECONDS", 600, _int(30, 24 * 3600), "Lifetime of a JWT access token"
    )
    id_token_seconds: int = setting(
        "IDP_ID_TOKEN_SECONDS", 3600, _int(30, 24 * 3600), "Lifetime of an ID token"
    )
    refresh_token_days: int = setting(
        "IDP_REFRESH_TOKEN_DAYS",
        30,
        _int(1, 365),
        "Lifetime of a refresh token family (offline_access); each use rotates the token",
    )
    require_pkce: bool = setting(
        "IDP_REQUIRE_PKCE",
        False,
        _bool,
        "Require PKCE (S256) from confidential clients too; public clients always need it",
    )
    backchannel_logout_attempts: int = setting(
        "IDP_BACKCHANNEL_LOGOUT_ATTEMPTS",
        6,
        _int(1, 20),
        "Deliveries of a back-channel logout token tried before giving up (backing off)",
    )
    secret_key: str = setting(
        "IDP_SECRET_KEY",
        "",
        _text,
        "Secret for CSRF tokens and keyed digests; empty: a random key kept in "
        "IDP_KEYS_DIR/secret.key (share it between nodes)",
    )
    max_body_bytes: int = setting(
        "IDP_MAX_BODY_BYTES",
        65536,
        _int(1024, 16 * 1024 * 1024),
        "Largest request body accepted (bytes); bigger ones get 413",
    )
    acr_policy_file: Path | None = setting(
        "IDP_ACR_POLICY_FILE",
        None,
        _acr_policy_file,
        "JSON file replacing the default acr policy table (see README, Assurance levels)",
    )
    acr_high_max_age_minutes: int = setting(
        "IDP_ACR_HIGH_MAX_AGE_MINUTES",
        60,
        _int(0, 24 * 60 * 30),
        "A `high` level reached longer ago counts lower (0: as long as the session)",
    )
    acr_substantial_max_age_minutes: int = setting(
        "IDP_ACR_SUBSTANTIAL_MAX_AGE_MINUTES",
        240,
        _int(0, 24 * 60 * 30),
        "A `substantial` level reached longer ago counts lower (0: as long as the session)",
    )
    argon2_time_cost: int = setting(
        "IDP_ARGON2_TIME_COST",
        2,
        _int(2, 100),
        "argon2id iterations (default OWASP: m=19 MiB, t=2, p=1); changing any "
        "argon2 setting rehashes each password at its next login",
    )
    argon2_memory_kib: int = setting(
        "IDP_ARGON2_MEMORY_KIB", 19456, _int(19456, 4 * 1024 * 1024), "argon2id memory in KiB"
    )
    argon2_parallelism: int = setting("IDP_ARGON2_PARALLELISM", 1, _int(1, 64), "argon2id lanes")
    password_min_length: int = setting(
        "IDP_PASSWORD_MIN_LENGTH", 8, _int(8, 64), "Shortest password accepted (NIST 800-63B: 8)"
    )
    password_max_length: int = setting(
        "IDP_PASSWORD_MAX_LENGTH", 256, _int(128, 1024), "Longest password accepted"
    )
    hibp_enabled: bool = setting(
        "IDP_HIBP_ENABLED",
        False,
        _bool,
        "Also refuse passwords found by the Have I Been Pwned range API (k-anonymity)",
    )
    hibp_url: str = setting(
        "IDP_HIBP_URL",
        "https://api.pwnedpasswords.com/range/",
        _text,
        "Range API base URL; the first 5 hex digits of the password's SHA-1 are appended",
    )
    email_verification_hours: int = setting(
        "IDP_EMAIL_VERIFICATION_HOURS", 24, _int(1, 24 * 14), "Validity of an email verification"
    )
    email_resend_seconds: int = setting(
        "IDP_EMAIL_RESEND_SECONDS",
        60,
        _int(0, 3600),
        "Cool-down per address and mail template: a mail like one sent to the same address "
        "less than this ago is not sent (so also the wait before a verification mail is resent)",
    )
    password_reset_minutes: int = setting(
        "IDP_PASSWORD_RESET_MINUTES", 60, _int(5, 24 * 60), "Validity of a password reset link"
    )
    login_free_attempts: int = setting(
        "IDP_LOGIN_FREE_ATTEMPTS",
        5,
        _int(1, 100),
        "Wrong passwords for one email before each further try must wait (doubling)",
    )
    login_lockout_attempts: int = setting(
        "IDP_LOGIN_LOCKOUT_ATTEMPTS",
        20,
        _int(2, 1000),
        "Wrong passwords in a row that lock the account for IDP_LOGIN_LOCKOUT_MINUTES",
    )
    login_lockout_minutes: int = setting(
        "IDP_LOGIN_LOCKOUT_MINUTES", 15, _int(1, 24 * 60), "Lockout time; also the longest wait"
    )
    login_ip_free_attempts: int = setting(
        "IDP_LOGIN_IP_FREE_ATTEMPTS",
        50,
        _int(1, 100000),
        "Login attempts from one client IP before its tries must wait (doubling)",
    )
    reauth_minutes: int = setting(
        "IDP_REAUTH_MINUTES",
        5,
        _int(1, 60),
        "Adding or removing a second factor needs one (or, without any, the password) "
        "used this recently in the session",
    )
    login_ip_max_wait_seconds: int = setting(
        "IDP_LOGIN_IP_MAX_WAIT_SECONDS",
        10,
        _int(1, 3600),
        "The longest wait one client IP's attempts impose (one address cannot lock others out)",
    )
    smtp_host: str = setting(
        "IDP_SMTP_HOST", "", _text, "SMTP server; empty: mail is written to IDP_MAIL_DIR"
    )
    smtp_port: int = setting("IDP_SMTP_PORT", 587, _int(1, 65535), "SMTP port")
    smtp_security: str = setting(
        "IDP_SMTP_SECURITY",
        "starttls",
        _choice("starttls", "tls", "none"),
        "starttls, tls (implicit, port 465) or none (local relays and tests only)",
    )
    smtp_ca_file: Path | None = setting(
        "IDP_SMTP_CA_FILE",
        None,
        _ca_file,
        "PEM file of the CAs trusted for the SMTP server's certificate instead of the system's",
    )
    smtp_user: str = setting("IDP_SMTP_USER", "", _text, "SMTP login (empty: no AUTH)")
    smtp_password: str = setting("IDP_SMTP_PASSWORD", "", _text, "SMTP password")
    mail_from: str = setting(
        "IDP_MAIL_FROM", "Servicekonto <noreply@localhost>", _text, "Sender of every mail"
    )
    mail_dir: Path = setting(
        "IDP_MAIL_DIR", Path("var/mail"), _path, "Where mail goes as .eml files without SMTP"
    )
    mail_poll_seconds: int = setting(
        "IDP_MAIL_POLL_SECONDS", 10, _int(1, 3600), "How often the server's sender looks for mail"
    )
    mail_max_attempts: int = setting(
        "IDP_MAIL_MAX_ATTEMPTS",
        12,
        _int(1, 100),
        "Delivery attempts (backing off) before giving up",
    )
    metrics_token: str = setting(
        "IDP_METRICS_TOKEN",
        "",
        _metrics_token,
        "Bearer token Prometheus sends to `/metrics`; empty: `/metrics` is off (404)",
    )
    metrics_dir: Path | None = setting(
        "IDP_METRICS_DIR",
        None,
        _optional_path,
        "Folder where a node's worker processes share their counts "
        "(unset: one per port under the temporary folder)",
    )
    log_level: str = setting(
        "IDP_LOG_LEVEL", "info", _choice("debug", "info", "warning", "error"), "Log level"
    )
    forwarded_allow_ips: str = setting(
        "IDP_FORWARDED_ALLOW_IPS",
        "",
        _proxies,
        "Reverse proxies trusted for `X-Forwarded-For` and `X-Forwarded-Proto`: comma-separated "
        "addresses or networks (CIDR), or `*`; empty: none (the client IP is the TCP peer's)",
    )
    flows_per_ip_minute: int = setting(
        "IDP_FLOWS_PER_IP_MINUTE",
        60,
        _int(1, 1_000_000),
        "Sign-in flows (`/authorize` requests that need a login, step-up or consent) one "
        "client address may open per minute; IPv6 addresses count by their /64",
    )
    maintenance_interval_seconds: int = setting(
        "IDP_MAINTENANCE_INTERVAL_SECONDS",
        600,
        _int(1, 7 * 24 * 3600),
        "How often the server deletes expired flows, sessions, codes, tokens, mail and "
        "counters (`idp maintenance run`), one worker of one node at a time",
    )
    outbox_retention_days: int = setting(
        "IDP_OUTBOX_RETENTION_DAYS",
        7,
        _int(1, 3650),
        "Days delivered or abandoned mail and back-channel logout tokens are kept",
    )
    client_assertion_max_seconds: int = setting(
        "IDP_CLIENT_ASSERTION_MAX_SECONDS",
        300,
        _int(30, 3600),
        "Longest lifetime of a `private_key_jwt` client assertion: its `exp` at most this far "
        "ahead of now, else `invalid_client`",
    )
    email_code_daily_tries: int = setting(
        "IDP_EMAIL_CODE_DAILY_TRIES",
        10,
        _int(1, 1000),
        "Email verification codes one address may try per day, over all its mails (the "
        "link in the mail is not counted)",
    )
    identity_minimum_acr: str = setting(
        "IDP_IDENTITY_MINIMUM_ACR",
        "http://eidas.europa.eu/LoA/substantial",
        _acr_level,
        "Verified identity data (`verified_claims` and the verified standard claims) goes "
        "only to tokens whose `acr` is at least this level, in the ID token, userinfo and "
        "introspection alike",
    )
    db_connect_timeout_seconds: int = setting(
        "IDP_DB_CONNECT_TIMEOUT_SECONDS",
        5,
        _int(1, 600),
        "How long opening a PostgreSQL connection may take",
    )
    db_statement_timeout_seconds: int = setting(
        "IDP_DB_STATEMENT_TIMEOUT_SECONDS",
        10,
        _int(0, 86400),
        "How long one PostgreSQL statement may run (0: no limit)",
    )
    db_lock_timeout_seconds: int = setting(
        "IDP_DB_LOCK_TIMEOUT_SECONDS",
        5,
        _int(1, 3600),
        "How long a statement waits for a lock (SQLite: for the database's write lock)",
    )
    ready_timeout_seconds: int = setting(
        "IDP_READY_TIMEOUT_SECONDS",
        2,
        _int(1, 60),
        "Within how long `/readyz` answers: 503 if the database has not taken a write by then",
    )
    refresh_reuse_grace_seconds: int = setting(
        "IDP_REFRESH_REUSE_GRACE_SECONDS",
        30,
        _int(0, 300),
        "Seconds after a refresh token's rotation in which the same client presenting it "
        "again (a retry after a lost answer) gets the same successor instead of the "
        "family's revocation; 0: every reuse revokes",
    )

    eid_issuer: str = setting(
        "IDP_EID_ISSUER",
        "",
        _optional_url,
        "Issuer of the upstream eID service (OpenID Connect; its discovery is read from "
        "there); empty: identification with the eID is off",
    )
    eid_client_id: str = setting(
        "IDP_EID_CLIENT_ID", "", _text, "This service's client_id at the eID service"
    )
    eid_client_secret: str = setting(
        "IDP_EID_CLIENT_SECRET",
        "",
        _text,
        "Client secret at the eID service (client_secret_basic); or IDP_EID_PRIVATE_KEY_FILE",
    )
    eid_private_key_file: Path | None = setting(
        "IDP_EID_PRIVATE_KEY_FILE",
        None,
        _eid_private_key_file,
        "PEM private key (RSA, or EC P-256) this service authenticates with at the eID "
        "service (private_key_jwt); or IDP_EID_CLIENT_SECRET",
    )
    eid_scopes: str = setting(
        "IDP_EID_SCOPES",
        "openid profile address",
        _eid_scopes,
        "Scopes asked of the eID service (space-separated, with openid)",
    )
    eid_claims: tuple[tuple[str, str], ...] = setting(
        "IDP_EID_CLAIMS",
        (),
        _eid_claims,
        "JSON object replacing the table of the eID service's claim names to ours "
        "(idp/eid/oidc.py CLAIMS); empty: that table",
    )
    eid_acr: str = setting(
        "IDP_EID_ACR",
        "http://eidas.europa.eu/LoA/high",
        _text,
        "The `acr` asked of the eID service and required in its ID token (a broker that "
        "also offers weaker logins must not count as the ID card); empty: not checked",
    )
    eid_timeout_seconds: int = setting(
        "IDP_EID_TIMEOUT_SECONDS",
        10,
        _int(1, 120),
        "How long each call to the eID service (discovery, keys, token, userinfo) may take",
    )
    eid_flow_minutes: int = setting(
        "IDP_EID_FLOW_MINUTES",
        15,
        _int(1, 120),
        "How long a started identification waits for its return from the eID service",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every field from ``environ`` (default ``os.environ``); raise SettingsError."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in overrides:
                continue
            raw = environ.get(f.metadata["env"])
            if raw is None:
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                raise SettingsError(f.metadata["env"], str(exc)) from None
        settings = cls(**values, **overrides)
        settings.check()
        return settings

    def check(self) -> None:
        """Cross-field rules that a single parser cannot see (and rules overrides must keep)."""
        if self.secret_key and len(self.secret_key.encode()) < 32:
            # Codes are HMAC'd under keys derived from it: a short one is a guessable key.
            raise SettingsError(
                "IDP_SECRET_KEY",
                "must be at least 32 bytes (e.g. `openssl rand -hex 32`), or empty for a "
                "generated key",
            )
        if self.environment == "production" and not self.issuer.startswith("https://"):
            raise SettingsError("IDP_ISSUER", "must use https in production")
        if self.environment == "production" and not self.smtp_host:
            # Without it mail would pile up in IDP_MAIL_DIR and no citizen could verify.
            raise SettingsError("IDP_SMTP_HOST", "must be set in production")
        if self.eid_issuer:
            self._check_eid()

    def _check_eid(self) -> None:
        if not self.eid_client_id:
            raise SettingsError("IDP_EID_CLIENT_ID", "must be set when IDP_EID_ISSUER is")
        if bool(self.eid_client_secret) == bool(self.eid_private_key_file):
            raise SettingsError(
                "IDP_EID_CLIENT_SECRET",
                "set it (client_secret_basic) or IDP_EID_PRIVATE_KEY_FILE (private_key_jwt): "
                "exactly one of them",
            )
        if self.environment != "production":
            return
        if urlsplit(self.eid_issuer).path.rstrip("/").endswith(EID_SIMULATOR_PATH):
            # The simulator identifies anyone as anyone: never an upstream in production.
            raise SettingsError(
                "IDP_EID_ISSUER",
                "names the eID simulator, which is for development only; set it to your "
                "eID service's issuer",
            )
        if not self.eid_issuer.startswith("https://"):
            raise SettingsError("IDP_EID_ISSUER", "must use https in production")

    @property
    def development(self) -> bool:
        return self.environment == "development"

    @classmethod
    def documentation(cls) -> list[tuple[str, str, str]]:
        """(variable, default, description) for each setting, for the README and --help."""
        return [
            (f.metadata["env"], str(f.default), f.metadata["doc"]) for f in dataclasses.fields(cls)
        ]
