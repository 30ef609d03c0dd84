"""The reset form does not tell by its timing whether an address has an account."""

from __future__ import annotations

import random
import statistics
import time
from datetime import timedelta

from litestar.testing import TestClient

from idp.accounts.registration import create_account
from idp.app import create_app
from tests.accounts.conftest import FAST_HASH, STRONG, csrf_token
from tests.conftest import make_settings

PAIRS = 200
# A sign test over interleaved pairs: without a difference the known address is the
# slower one in half of them (standard deviation 0.035 at 200 pairs). The known path
# used to do more work and to deliver its mail beside the answer: slower in 3 of 4.
SLOWER_AT_MOST = 0.62


def test_a_reset_for_an_unknown_address_takes_as_long_as_for_a_known_one(
    db, keys_dir, tmp_path, clock
):
    # Many requests from one address: the per-address flow limit is not what is measured.
    settings = make_settings(
        db.url, keys_dir, mail_dir=tmp_path / "mail", flows_per_ip_minute=100_000, **FAST_HASH
    )
    known = [f"bekannt{i}@example.de" for i in range(PAIRS)]
    with db.unit_of_work() as session:
        for address in known:
            create_account(session, settings, email=address, password=STRONG, verified=True)
    unknown = [f"unbekannt{i}@example.de" for i in range(PAIRS)]
    differences = []
    with TestClient(create_app(settings, clock=clock), base_url=settings.issuer) as client:
        token = csrf_token(client.get("/password/forgot").text)

        def ask(address: str) -> float:
            started = time.perf_counter()
            response = client.post("/password/forgot", data={"email": address, "csrf_token": token})
            elapsed = time.perf_counter() - started
            assert response.status_code == 200
            time.sleep(0.005)
            return elapsed

        for i in range(5):  # warm up both paths
            ask(f"bekannt{i}@example.de")
            ask(f"warm{i}@example.de")
        clock.advance(timedelta(minutes=5))  # past the warm-up's mail cool-down
        for pair in zip(known, unknown, strict=True):
            # In random order, so drifts of the machine hit both alike.
            if random.random() < 0.5:
                differences.append(ask(pair[0]) - ask(pair[1]))
            else:
                differences.append(-(ask(pair[1]) - ask(pair[0])))
    slower = sum(d > 0 for d in differences) / PAIRS
    assert slower <= SLOWER_AT_MOST, (
        f"a known address was slower in {slower:.0%} of {PAIRS} pairs, by "
        f"{statistics.median(differences) * 1000:+.2f} ms (median)"
    )
