"""Prometheus metrics of one node, summed over its worker processes.

What is counted costs the hot paths nothing: every audited event (logins,
registrations, codes issued, revoked grants, password resets, ...) is counted
when the transaction that recorded it commits (``idp.audit.events.record``
notes it in the session), so the counts agree with the audit trail. Request rates and
latencies are the reverse proxy's to measure; counting them here would cost every
request.

Each worker process keeps its counts in memory and writes them, with its memory and
CPU use, to a file of its own in a folder shared by the node's workers
(``IDP_METRICS_DIR``; by default ``idp serve`` uses one per port under the
temporary folder, emptied when it starts). The
worker that answers ``/metrics`` sums those files, so the counters keep rising
while workers come and go. Gauges of the outboxes and signing keys are read from
the database when scraped.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from idp.audit.events import RECORDED
from idp.db.engine import Database
from idp.db.models import BackchannelLogout, MailMessage, SigningKey

log = logging.getLogger("idp.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ProcessMetrics:
    """This process's counts, and where the node's processes leave theirs."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.pid = os.getpid()
        self.started = time.time()
        self.events: Counter[str] = Counter()
        self._lock = threading.Lock()

    # -- counting ------------------------------------------------------------------------

    def count_events(self, names: list[str]) -> None:
        with self._lock:
            self.events.update(names)

    def listen(self, db: Database) -> None:
        """Count the audit events of ``db`` when their unit of work commits."""

        def after_commit(session: Session) -> None:
            names = session.info.pop(RECORDED, None)
            if names:
                self.count_events(names)

        def after_rollback(session: Session) -> None:
            session.info.pop(RECORDED, None)

        event.listen(db.sessions, "after_commit", after_commit)
        event.listen(db.sessions, "after_rollback", after_rollback)

    # -- sharing between processes -------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            events = dict(self.events)
        times = os.times()
        return {
            "pid": self.pid,
            "started": self.started,
            "events": events,
            "cpu_seconds": times.user + times.system,
            "rss_bytes": _rss_bytes(),
        }

    def publish(self) -> None:
        """Write this process's snapshot to the shared folder (atomically)."""
        if self.directory is None:
            return
        target = self.directory / f"{self.pid}.json"
        partial = self.directory / f".{self.pid}.json.partial"
        partial.write_text(json.dumps(self.snapshot()), encoding="utf-8")
        os.replace(partial, target)

    def node_snapshots(self) -> list[dict]:
        """Every process's last snapshot (ended ones too: their counts stay), this one's current."""
        snapshots = {self.pid: self.snapshot()}
        if self.directory is not None:
            for path in self.directory.glob("*.json"):
                try:
                    data = json.loads(path.read_text(encoding="utf-8"))
                    pid = int(data["pid"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                snapshots.setdefault(pid, data)
        return list(snapshots.values())


def run_metrics_dir(port: int) -> Path:
    """The folder a server on ``port`` shares its workers' counts in, emptied for this run.

    One per user and port under the temporary folder, reused by the next run rather
    than left behind: uvicorn ends the process by re-raising the stop signal, so no
    clean-up at exit would run. A folder there that is not this user's own and private
    (another local user could have made it, to feed in counts) is not used; a fresh
    private one is made instead.
    """
    path = Path(tempfile.gettempdir()) / f"idp-metrics-{os.getuid()}-{port}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            return Path(tempfile.mkdtemp(prefix="idp-metrics-"))
    for old in path.glob("*.json"):
        old.unlink(missing_ok=True)
    return path


def _alive(pid: object) -> bool:
    try:
        os.kill(int(pid), 0)  # type: ignore[call-overload]
    except (OSError, ValueError, TypeError):
        return False
    return True


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def exposition(metrics: ProcessMetrics, db: Database, version: str) -> str:
    """The Prometheus text format (0.0.4) for this node."""
    snapshots = metrics.node_snapshots()
    events: Counter[str] = Counter()
    for snapshot in snapshots:
        events.update(snapshot.get("events") or {})
    running = [s for s in snapshots if _alive(s.get("pid"))]
    with db.unit_of_work() as uow:
        mail = dict(
            uow.execute(select(MailMessage.status, func.count()).group_by(MailMessage.status)).all()
        )
        logouts_pending = uow.scalar(
            select(func.count())
            .select_from(BackchannelLogout)
            .where(BackchannelLogout.delivered_at.is_(None))
            .where(BackchannelLogout.next_attempt_at.is_not(None))
        )
        keys = uow.execute(
            select(SigningKey.state, SigningKey.alg, func.count()).group_by(
                SigningKey.state, SigningKey.alg
            )
        ).all()

    lines = [
        "# HELP idp_info The running idp version.",
        "# TYPE idp_info gauge",
        f'idp_info{{version="{_label(version)}"}} 1',
        "# HELP idp_audit_events_total Audited events committed, by event.",
        "# TYPE idp_audit_events_total counter",
    ]
    lines += [
        f'idp_audit_events_total{{event="{_label(name)}"}} {count}'
        for name, count in sorted(events.items())
    ]
    lines += [
        "# HELP idp_mail_outbox_messages Messages in the mail outbox, by status "
        "(failed: given up until `idp mail retry-failed`).",
        "# TYPE idp_mail_outbox_messages gauge",
    ]
    lines += [
        f'idp_mail_outbox_messages{{status="{_label(status)}"}} {mail.get(status, 0)}'
        for status in ("pending", "sent", "failed")
    ]
    lines += [
        "# HELP idp_backchannel_logouts_pending Logout tokens waiting for delivery.",
        "# TYPE idp_backchannel_logouts_pending gauge",
        f"idp_backchannel_logouts_pending {logouts_pending or 0}",
        "# HELP idp_signing_keys Signing keys, by state and algorithm.",
        "# TYPE idp_signing_keys gauge",
    ]
    lines += [
        f'idp_signing_keys{{state="{_label(state)}",alg="{_label(alg)}"}} {count}'
        for state, alg, count in sorted(keys)
    ]
    lines += [
        "# HELP idp_process_resident_memory_bytes Resident memory of each running worker process.",
        "# TYPE idp_process_resident_memory_bytes gauge",
    ]
    lines += [
        f'idp_process_resident_memory_bytes{{pid="{s["pid"]}"}} {s["rss_bytes"]}'
        for s in running
        if s.get("rss_bytes") is not None
    ]
    lines += [
        "# HELP idp_process_cpu_seconds_total CPU time of each running worker process.",
        "# TYPE idp_process_cpu_seconds_total counter",
    ]
    lines += [
        f'idp_process_cpu_seconds_total{{pid="{s["pid"]}"}} {float(s["cpu_seconds"]):.3f}'
        for s in running
        if s.get("cpu_seconds") is not None
    ]
    return "\n".join(lines) + "\n"
