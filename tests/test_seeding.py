"""`idp bench seed`: bulk accounts for benchmarks, and the client and account they use."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets

import httpx
from sqlalchemy import func, select

from idp.accounts.passwords import passwords_for
from idp.db.models import Account, AuditEvent, Client
from idp.seeding import CLIENT_ID, EMAIL, PASSWORD, seed, seeded_email
from tests.conftest import make_settings
from tests.oidc import factories
from tests.test_cli import run


def test_seeding_adds_verified_accounts_sharing_one_hash_in_batches(db, settings):
    steps = []
    result = seed(db, settings, accounts=25, batch=10, progress=lambda d, t: steps.append(d))
    assert (result.accounts, result.added, steps) == (25, 25, [10, 20, 25])
    with db.unit_of_work() as session:
        rows = session.scalars(select(Account).where(Account.email.like("seed-%"))).all()
        assert sorted(r.email for r in rows) == [seeded_email(n) for n in range(25)]
        assert {r.proofing_level for r in rows} == {"low"}
        assert all(r.email_verified_at is not None for r in rows)
        assert len({r.subject for r in rows}) == 25
        hashes = {r.password_hash for r in rows}
        assert len(hashes) == 1
        assert passwords_for(settings).verify(hashes.pop(), PASSWORD)
        known = session.scalar(select(Account).where(Account.email == EMAIL))
        assert known is not None and known.proofing_level == "low"


def test_seeding_again_adds_only_the_missing_accounts_and_gives_the_client_a_new_secret(
    db, settings
):
    first = seed(db, settings, accounts=5)
    second = seed(db, settings, accounts=8)
    assert (second.accounts, second.added) == (8, 3)
    assert second.client_secret != first.client_secret
    third = seed(db, settings, accounts=2)
    assert (third.accounts, third.added) == (8, 0)
    with db.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(Account)) == 9
        seeded = session.scalars(
            select(AuditEvent.data).where(AuditEvent.event == "bench.seeded")
        ).all()
        assert seeded == [{"accounts": 5}, {"accounts": 3}]


def test_a_seeded_account_logs_in_and_the_bench_client_uses_every_grant(db, live_server):
    result = seed(db, live_server.settings, accounts=3)
    token_url = f"{live_server.url}/token"
    auth = (result.client_id, result.client_secret)

    issued = httpx.post(token_url, data={"grant_type": "client_credentials"}, auth=auth)
    assert issued.status_code == 200, issued.text
    assert issued.json()["token_type"] == "Bearer"

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    browser = factories.Browser(live_server.url)
    callback = browser.open(
        f"{live_server.url}/authorize?response_type=code&client_id={result.client_id}"
        f"&redirect_uri={result.redirect_uri}&scope=openid+offline_access&prompt=consent"
        f"&state=s&code_challenge={challenge.rstrip(b'=').decode()}&code_challenge_method=S256",
        credentials=(seeded_email(2), result.password),
    )
    code = factories.callback_params(callback)["code"]
    exchanged = httpx.post(
        token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": result.redirect_uri,
            "code_verifier": verifier,
        },
        auth=auth,
    )
    assert exchanged.status_code == 200, exchanged.text
    refreshed = httpx.post(
        token_url,
        data={"grant_type": "refresh_token", "refresh_token": exchanged.json()["refresh_token"]},
        auth=auth,
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != exchanged.json()["refresh_token"]


def test_the_command_prints_one_json_object_and_refuses_production(db, keys_dir):
    env = {"IDP_DATABASE_URL": db.url, "IDP_KEYS_DIR": str(keys_dir)}
    result = run("bench", "seed", "--accounts", "4", "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["accounts"], data["added"], data["email"]) == (4, 4, EMAIL)
    assert data["email_pattern"].format(n=3) == seeded_email(3)

    refused = run(
        "bench",
        "seed",
        "--accounts",
        "4",
        env={
            **env,
            "IDP_ENV": "production",
            "IDP_ISSUER": "https://idp.example.de",
            "IDP_SMTP_HOST": "mail.example.de",
        },
    )
    assert refused.returncode == 1
    assert "development" in refused.stderr and "Traceback" not in refused.stderr


def test_the_bench_client_signs_id_tokens_with_the_configured_default(db, keys_dir):
    seed(db, make_settings(db.url, keys_dir, id_token_signing_alg="ES256"), accounts=0)
    with db.unit_of_work() as session:
        assert session.get(Client, CLIENT_ID).id_token_signed_response_alg == "ES256"
