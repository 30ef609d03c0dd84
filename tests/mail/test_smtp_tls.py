"""The SMTP sender over STARTTLS and implicit TLS, with AUTH, against a real
aiosmtpd server on loopback whose self-signed certificate the test makes and
the sender trusts only through ``IDP_SMTP_CA_FILE``."""

from __future__ import annotations

import datetime
import ipaddress
import smtplib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select

from idp.db.models import MailMessage
from idp.mail.outbox import enqueue, send_pending
from idp.mail.transport import SmtpTransport
from idp.settings import Settings, SettingsError
from tests.conftest import free_port, make_settings

USER = "idp-relay"
PASSWORD = "Relay-Passwort 2024"


@dataclass
class Certificate:
    cert: Path
    key: Path


def _self_signed(folder: Path, name: str) -> Certificate:
    """A self-signed server certificate for 127.0.0.1 (and nothing else)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = Certificate(folder / f"{name}.pem", folder / f"{name}.key")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class Relay:
    """What the SMTP server received, and who logged in."""

    def __init__(self) -> None:
        self.envelopes: list = []
        self.logins: list[tuple[str, str]] = []
        self.port = 0
        self.received = threading.Event()

    async def handle_DATA(self, server, session, envelope) -> str:
        self.envelopes.append(envelope)
        self.received.set()
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((mechanism, login))
        ok = login == USER and password == PASSWORD
        # handled=False: the server answers 535 itself when the login is refused.
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


@pytest.fixture
def certificate(tmp_path) -> Certificate:
    return _self_signed(tmp_path / "tls", "relay")


def _server_context(certificate: Certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert, certificate.key)
    return context


def _start(relay: Relay, **kwargs) -> Controller:
    controller = Controller(relay, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    relay.port = controller.port
    return controller


@pytest.fixture
def starttls_relay(certificate) -> Iterator[Relay]:
    """Offers STARTTLS, refuses mail and AUTH before it (as public relays do)."""
    relay = Relay()
    controller = _start(
        relay,
        tls_context=_server_context(certificate),
        require_starttls=True,
        authenticator=relay.authenticate,
        auth_require_tls=True,
    )
    yield relay
    controller.stop()


@pytest.fixture
def implicit_tls_relay(certificate) -> Iterator[Relay]:
    """TLS from the first byte (submissions port 465)."""
    relay = Relay()
    controller = _start(relay, ssl_context=_server_context(certificate))
    yield relay
    controller.stop()


@pytest.fixture
def plain_relay() -> Iterator[Relay]:
    """Offers no STARTTLS at all."""
    relay = Relay()
    controller = _start(relay)
    yield relay
    controller.stop()


def _settings(tmp_path, relay: Relay, security: str, **overrides) -> Settings:
    values = {"smtp_host": "127.0.0.1", "smtp_port": relay.port, "smtp_security": security}
    return make_settings(
        f"sqlite:///{tmp_path / 'unused.db'}", tmp_path / "keys", **{**values, **overrides}
    )


def _mail(to: str = "buerger@example.de") -> EmailMessage:
    email = EmailMessage()
    email["From"] = "Servicekonto <noreply@stadt.example>"
    email["To"] = to
    email["Subject"] = "Test"
    email.set_content("Hallo")
    return email


def test_starttls_delivers_to_a_relay_trusted_through_the_ca_file(
    tmp_path, starttls_relay, certificate
):
    settings = _settings(tmp_path, starttls_relay, "starttls", smtp_ca_file=certificate.cert)
    SmtpTransport(settings).deliver(_mail())
    assert [e.rcpt_tos for e in starttls_relay.envelopes] == [["buerger@example.de"]]


def test_implicit_tls_delivers_to_a_relay_trusted_through_the_ca_file(
    tmp_path, implicit_tls_relay, certificate
):
    settings = _settings(tmp_path, implicit_tls_relay, "tls", smtp_ca_file=certificate.cert)
    SmtpTransport(settings).deliver(_mail())
    assert [e.rcpt_tos for e in implicit_tls_relay.envelopes] == [["buerger@example.de"]]


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_certificate_the_sender_does_not_trust_is_refused(
    tmp_path, starttls_relay, implicit_tls_relay, security
):
    relay = starttls_relay if security == "starttls" else implicit_tls_relay
    with pytest.raises(ssl.SSLCertVerificationError):
        SmtpTransport(_settings(tmp_path, relay, security)).deliver(_mail())
    assert relay.envelopes == []


def test_a_certificate_from_another_ca_is_refused(tmp_path, starttls_relay):
    other = _self_signed(tmp_path / "other", "other")
    settings = _settings(tmp_path, starttls_relay, "starttls", smtp_ca_file=other.cert)
    with pytest.raises(ssl.SSLCertVerificationError):
        SmtpTransport(settings).deliver(_mail())
    assert starttls_relay.envelopes == []


def test_a_host_name_the_certificate_does_not_name_is_refused(
    tmp_path, implicit_tls_relay, certificate
):
    # The certificate names 127.0.0.1 only; "localhost" reaches the same server.
    settings = _settings(
        tmp_path, implicit_tls_relay, "tls", smtp_ca_file=certificate.cert, smtp_host="localhost"
    )
    with pytest.raises(ssl.SSLCertVerificationError, match="localhost"):
        SmtpTransport(settings).deliver(_mail())
    assert implicit_tls_relay.envelopes == []


def test_starttls_is_never_skipped_when_the_relay_does_not_offer_it(tmp_path, plain_relay):
    with pytest.raises(smtplib.SMTPNotSupportedError):
        SmtpTransport(_settings(tmp_path, plain_relay, "starttls")).deliver(_mail())
    assert plain_relay.envelopes == []


def test_smtp_auth_logs_in_with_user_and_password_after_starttls(
    tmp_path, starttls_relay, certificate
):
    settings = _settings(
        tmp_path,
        starttls_relay,
        "starttls",
        smtp_ca_file=certificate.cert,
        smtp_user=USER,
        smtp_password=PASSWORD,
    )
    SmtpTransport(settings).deliver(_mail())
    assert [login for _mechanism, login in starttls_relay.logins] == [USER]
    assert len(starttls_relay.envelopes) == 1


def test_a_wrong_smtp_password_keeps_the_mail_in_the_outbox_until_it_is_fixed(
    db, tmp_path, starttls_relay, certificate
):
    def settings(password: str) -> Settings:
        return make_settings(
            db.url,
            tmp_path / "keys",
            smtp_host="127.0.0.1",
            smtp_port=starttls_relay.port,
            smtp_security="starttls",
            smtp_ca_file=certificate.cert,
            smtp_user=USER,
            smtp_password=password,
        )

    with db.unit_of_work() as session:
        enqueue(
            session,
            settings("falsch"),
            "buerger@example.de",
            "account_exists",
            "de",
            {
                "login_link": "http://127.0.0.1:8000/login",
                "reset_link": "http://127.0.0.1:8000/reset",
            },
        )

    assert send_pending(db, settings("falsch")) == 0
    with db.unit_of_work() as session:
        message = session.scalars(select(MailMessage)).one()
        assert (message.status, message.attempts) == ("pending", 1)
        assert message.last_error.startswith("SMTPAuthenticationError")
    assert starttls_relay.envelopes == []

    assert send_pending(db, settings(PASSWORD), ignore_backoff=True) == 1
    assert [e.rcpt_tos for e in starttls_relay.envelopes] == [["buerger@example.de"]]


def test_a_ca_file_that_is_missing_or_not_pem_stops_the_start(tmp_path):
    with pytest.raises(SettingsError, match="IDP_SMTP_CA_FILE: cannot read"):
        Settings.from_env({"IDP_SMTP_CA_FILE": str(tmp_path / "missing.pem")})
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(SettingsError, match=r"IDP_SMTP_CA_FILE: .*no PEM certificate"):
        Settings.from_env({"IDP_SMTP_CA_FILE": str(garbage)})
