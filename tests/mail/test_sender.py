"""The server's background mail sender: it delivers until the server stops, and then stops."""

from __future__ import annotations

import asyncio

import pytest

from idp.mail.outbox import MailSender
from tests.conftest import make_settings, on_own_loop


def test_a_nudge_in_the_same_loop_turn_as_the_shutdown_still_stops_the_sender(
    db, database_url, keys_dir
):
    # A request queues a mail and nudges the sender just as the server shuts down: the
    # shutdown's cancel must not be lost (with asyncio.wait_for on Python 3.11 it was, and
    # the server's shutdown waited for the sender forever).
    sender = MailSender(db, make_settings(database_url, keys_dir, mail_poll_seconds=60))

    async def shut_down_while_nudged() -> None:
        task = asyncio.create_task(sender.run())
        for _ in range(1000):  # until its first round is done and it waits to be woken
            await asyncio.sleep(0.01)
            if sender._wake is not None and sender._wake._waiters:
                break
        else:
            pytest.fail("the sender never waited for a nudge")
        sender._wake.set()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        assert done, "the sender kept running after it was cancelled"
        assert task.cancelled()

    on_own_loop(shut_down_while_nudged())
