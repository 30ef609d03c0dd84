"""Engine and unit-of-work factory for SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import anyio.to_thread
from sqlalchemy import Engine, and_, bindparam, create_engine, event, inspect, select
from sqlalchemy.engine import Compiled, Dialect, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, make_transient_to_detached, sessionmaker

from idp.clock import KEY as CLOCK
from idp.clock import SYSTEM, Clock
from idp.db.awaited import AwaitedStatements
from idp.db.timeouts import DEFAULT_TIMEOUTS, MIGRATION_TIMEOUTS, Timeouts, postgresql_options

if TYPE_CHECKING:
    from idp.settings import Settings

try:
    import fcntl
except ImportError:  # not POSIX: processes fall back on SQLite's busy handler
    fcntl = None  # type: ignore[assignment]


def _sqlite_pragmas(
    dbapi_connection, _record, *, commits_checkpoint: bool = True, lock_timeout: int = 5
) -> None:
    # SQLAlchemy's recipe for SQLite transactions: the driver begins none of its own (it
    # began one before an INSERT but not before a SAVEPOINT, whose RELEASE then committed
    # on its own); _OneWriter emits the BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={lock_timeout * 1000}")
    if not commits_checkpoint:
        cursor.execute("PRAGMA wal_autocheckpoint=0")  # Database.checkpoint does it
    cursor.close()


# WAL pages beyond which Database.checkpoint copies the WAL into the database file
# (SQLite's automatic checkpoint waits for as many).
CHECKPOINT_PAGES = 1000


T = TypeVar("T")

# Statements that do not start SQLite's write transaction: outside one they run on their
# own, each seeing what is committed; any other statement begins it first.
_READS = ("SELECT", "PRAGMA")

# SQLite's error for a lock not had in time, raised by the writer queue too.
LOCKED = "database is locked"


class _OneWriter:
    """One SQLite write transaction at a time, queued: within the process on a lock,
    between processes on an advisory lock of a file beside the database.

    SQLite lets one connection write at a time; others retry in its busy handler,
    sleeping 1-100 ms between tries while the writer may itself wait for the GIL.
    Under load that convoy cut the refresh-token grant to a tenth of its rate.
    Taking a process lock at the transaction's first write, and releasing it when
    the connection goes back to the pool (after its commit or rollback), queues
    writers without sleeping. Worker processes of one node share the database too:
    the first hold in the process also takes ``flock`` on ``<database>.writer``, so
    the kernel wakes the next process's writer as soon as the lock is let go. The
    busy handler is left for writers that do not queue here (``idp`` commands,
    migrations).

    It also begins the write transaction: ``BEGIN IMMEDIATE`` once the lock is held,
    before the first statement that is not a read (a ``SAVEPOINT`` too). Reads before it
    run outside a transaction, as they did under the driver's own transactions: a
    transaction begun at its first read would hold that read's snapshot, and SQLite
    refuses at once (``database is locked``, no busy wait) to let it write once another
    connection has committed since.
    """

    def __init__(self, lock_path: Path | None = None, lock_timeout: int = 5) -> None:
        self.lock = threading.RLock()
        self._lock_timeout = lock_timeout
        self._owner: int | None = None
        self._holds = 0
        self._lock_path = lock_path if fcntl is not None else None
        # The lock file's descriptor, opened by the process that uses it (not inherited
        # across a fork: a child's flock on its parent's descriptor would be the same lock).
        self._file: tuple[int, int] | None = None

    def before_execute(self, conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().startswith(_READS):
            self.hold(conn)
            begin(cursor.connection)

    def hold(self, conn: Any) -> None:
        """Take the lock for ``conn``'s write transaction (once); its checkin releases it.

        Raises sqlite3.OperationalError (``database is locked``) after the lock timeout.
        """
        if not conn.info.get("writing"):
            if not self.lock.acquire(timeout=self._lock_timeout):
                raise sqlite3.OperationalError(f"{LOCKED} (waited for this process's writer)")
            if not self._holds and self._lock_path is not None:
                try:
                    fcntl.flock(self._descriptor(), fcntl.LOCK_EX)
                except BaseException:
                    self.lock.release()
                    raise
            self._owner = threading.get_ident()
            self._holds += 1
            conn.info["writing"] = True

    def _descriptor(self) -> int:
        pid = os.getpid()
        if self._file is None or self._file[0] != pid:
            self._file = (pid, os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600))
        return self._file[1]

    def held_here(self) -> bool:
        """Whether this thread has a write transaction open: a second one would wait on it."""
        return self._owner == threading.get_ident()

    def checkin(self, _dbapi_connection: Any, record: Any) -> None:
        # The record's info is the dict the Connection's ``info`` showed above.
        if record.info.pop("writing", False):
            try:
                self._holds -= 1
                if not self._holds:
                    self._owner = None
                    if self._lock_path is not None:
                        fcntl.flock(self._descriptor(), fcntl.LOCK_UN)
            finally:
                self.lock.release()

    def install(self, engine: Engine) -> None:
        event.listen(engine, "before_cursor_execute", self.before_execute)
        event.listen(engine, "checkin", self.checkin)


def begin(dbapi_connection: sqlite3.Connection) -> None:
    """Begin SQLite's write transaction on ``dbapi_connection``, unless one is open."""
    if not dbapi_connection.in_transaction:
        dbapi_connection.execute("BEGIN IMMEDIATE")


# PostgreSQL connections kept per process (each pool: the engine's, the awaited one's).
POOL_SIZE = 10


def make_engine(database_url: str) -> Engine:
    """Create the engine for migrations; an SQLite file's folder is created and the file
    put in WAL mode."""
    return _make_engine(database_url, timeouts=MIGRATION_TIMEOUTS)[0]


def _make_engine(
    database_url: str, commits_checkpoint: bool = True, timeouts: Timeouts = DEFAULT_TIMEOUTS
) -> tuple[Engine, _OneWriter | None]:
    """The engine and, for SQLite, the process's writer queue installed on it."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # LIFO: the event loop's statements come back to the connection used last, whose
        # page cache is still current (one that sat idle while another wrote re-reads its
        # pages: 19 reads per refresh-token rotation where it is now 0.6).
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_use_lifo=True)
        event.listen(
            engine,
            "connect",
            partial(
                _sqlite_pragmas, commits_checkpoint=commits_checkpoint, lock_timeout=timeouts.lock
            ),
        )
        in_file = url.database and url.database != ":memory:" and "mode=memory" not in str(url)
        writer = _OneWriter(Path(f"{url.database}.writer") if in_file else None, timeouts.lock)
        writer.install(engine)
        return engine, writer
    engine = create_engine(
        url,
        pool_size=POOL_SIZE,
        max_overflow=20,
        pool_timeout=timeouts.connect,
        connect_args=postgresql_options(timeouts),
    )
    _ping_when_idle(engine)
    return engine, None


# A pooled connection unused for this long is checked with a ping before use.
IDLE_PING_SECONDS = 2.0


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's pre-ping, but only for connections that sat idle in the pool.

    A ping is a round trip, as long as a short query: pinging every checkout cost the
    userinfo endpoint a third of its time. A connection used a moment ago is alive;
    one idle for a while may have lost its server (restart, failover) and is replaced.
    """

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is not None and time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError() from exc
        if not alive:
            raise DisconnectionError()

    def checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)


class Plan(NamedTuple):
    """A :class:`Prebuilt` statement compiled for one dialect and set of parameters."""

    compiled: Compiled
    sql: str
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]  # the parameters' type conversions
    order: tuple[str, ...] | None  # the parameters' order, for a positional driver
    results: tuple[Any, ...]  # each column's conversion (None: the driver's value)
    row: type | None  # a named tuple of the columns, if the statement returns rows

    def arguments(self, params: Mapping[str, Any]) -> Any:
        """The driver's arguments: ``params`` with the statement's own literal values,
        converted by their types, in the driver's parameter style."""
        values = self.compiled.construct_params(params)
        for name, process in self.binds:
            if name in values:
                values[name] = process(values[name])
        return tuple(values[name] for name in self.order) if self.order is not None else values

    def converted(self, row: Any) -> tuple[Any, ...] | None:
        """A row from the driver, its values converted as SQLAlchemy would."""
        if row is None:
            return None
        return tuple(
            value if process is None else process(value)
            for value, process in zip(row, self.results, strict=True)
        )


class Prebuilt:
    """A Core statement a hot path runs on a DB-API cursor, compiled once.

    Compiled once per dialect and set of parameter names. In an open transaction
    SQLAlchemy spends about three times what SQLite does on a short statement (cache
    key, execution context, result); the password login runs six, after its hash and
    beside the next one, where every instruction costs several times its quiet-core
    price (bench/RESULTS.md). What SQLAlchemy does that matters is kept: parameters and
    returned values are converted by their column types, the engine's
    ``before_cursor_execute`` listeners see the statement in a unit of work (SQLite's
    writer queue takes its lock there), and driver errors are raised as SQLAlchemy's.
    Columns left out of an INSERT get no Python-side default: pass every value.

    :meth:`execute` runs it in a unit of work; :func:`read_row` and
    :func:`read_row_awaited` run a SELECT outside any transaction.
    """

    __slots__ = ("_plans", "statement")

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._plans: dict[tuple[str, frozenset[str]], Plan] = {}

    def plan(self, dialect: Dialect, names: frozenset[str]) -> Plan:
        plan = self._plans.get((dialect.name, names))
        if plan is None:
            compiled = self.statement.compile(dialect=dialect, column_keys=sorted(names))
            binds = tuple(
                (name, process)
                for name, bind in compiled.binds.items()
                if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
            )
            columns = list(getattr(self.statement, "exported_columns", ()))
            results = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in columns
            )
            row = (
                namedtuple("Row", [str(column.key) for column in columns], rename=True)
                if columns
                else None
            )
            order = tuple(compiled.positiontup) if dialect.positional else None
            plan = Plan(compiled, compiled.string, binds, order, results, row)
            self._plans[(dialect.name, names)] = plan
        return plan

    def execute(self, session: Session, params: Mapping[str, Any]) -> list[Any]:
        """Run it in ``session``'s transaction; the rows it returns (converted, with the
        columns' names), if any."""
        connection = session.connection()
        return self._run(
            connection.connection.dbapi_connection,
            connection.dialect,
            params,
            connection if connection.dispatch.before_cursor_execute else None,
        )

    def execute_on(
        self, database: Database, connection: Any, params: Mapping[str, Any]
    ) -> list[Any]:
        """:meth:`execute` on a DB-API connection of :meth:`Database.dbapi_connection`, in its
        transaction (which holds SQLite's writer lock already)."""
        return self._run(connection, database.engine.dialect, params, None)

    def _run(
        self, dbapi_connection: Any, dialect: Dialect, params: Mapping[str, Any], listened: Any
    ) -> list[Any]:
        plan = self.plan(dialect, frozenset(params))
        arguments = plan.arguments(params)
        sql = plan.sql
        cursor = dbapi_connection.cursor()
        try:
            if listened is not None:
                for listener in listened.dispatch.before_cursor_execute:
                    listener(listened, cursor, sql, arguments, None, False)
            cursor.execute(sql, arguments)
            rows = cursor.fetchall() if cursor.description else []
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(sql, arguments, exc, dialect.loaded_dbapi.Error) from exc
        finally:
            cursor.close()
        if plan.row is None:
            return rows
        return [plan.row(*plan.converted(values)) for values in rows]


E = TypeVar("E")


class PrebuiltLoad(Generic[E]):
    """One entity by its primary key or a unique key: a :class:`Prebuilt` SELECT of its
    columns, the object attached to the unit of work as though the session had loaded it.

    For the pages every sign-in passes (the login session by its cookie, the
    authorization flow, the account): ``Session.get`` and ORM queries cost several times
    the statement (cache key, execution context, loading). The object is made from the
    row, its history reset (``make_transient_to_detached``) and added: from then on the
    unit of work tracks and flushes its changes as those of any loaded object. An object
    the session holds already is returned as it is (it may carry changes of its own).

    ``changing``: an UPDATE of the entity's table instead of the SELECT; the object is
    the row it changed (RETURNING every column), as it is after the change.
    """

    __slots__ = (
        "_attributes",
        "_by_primary_key",
        "_entity",
        "_key_parameters",
        "_mapper",
        "_primary_key",
        "_statement",
    )

    def __init__(self, entity: type[E], *key: Any, changing: Any = None) -> None:
        mapper = inspect(entity)
        self._entity = entity
        self._mapper = mapper
        self._attributes = tuple(prop.key for prop in mapper.column_attrs)
        # The primary key's attributes (in a row's values) and parameters (in ``get``'s).
        self._primary_key = tuple(
            mapper.get_property_by_column(column).key for column in mapper.primary_key
        )
        self._key_parameters = tuple(column.key for column in mapper.primary_key)
        columns = [prop.columns[0] for prop in mapper.column_attrs]
        self._by_primary_key = not key and changing is None
        if changing is not None:
            self._statement = Prebuilt(changing.returning(*columns))
            return
        key_columns = key or tuple(mapper.primary_key)
        self._statement = Prebuilt(
            select(*columns).where(
                and_(*(column == bindparam(column.key) for column in key_columns))
            )
        )

    def get(self, session: Session, **key: Any) -> E | None:
        """The entity whose key columns have these values (with ``changing``: the row the
        statement changed, given its parameters), or None."""
        if self._by_primary_key:  # as Session.get: the session's own object, without SQL
            held = session.identity_map.get(
                self._mapper.identity_key_from_primary_key(
                    [key[name] for name in self._key_parameters]
                )
            )
            if held is not None:
                return held
        rows = self._statement.execute(session, key)
        if not rows:
            return None
        values = dict(zip(self._attributes, rows[0], strict=True))
        identity = self._mapper.identity_key_from_primary_key(
            [values[name] for name in self._primary_key]
        )
        held = session.identity_map.get(identity)
        if held is not None:
            return held
        entity = self._entity(**values)
        make_transient_to_detached(entity)
        session.add(entity)
        return entity


def read_row(
    bind: Engine, statement: Prebuilt, params: Mapping[str, Any]
) -> tuple[Any, ...] | None:
    """The first row of a prebuilt SELECT, on a pooled connection's DB-API cursor.

    For the hottest read-only paths (is this access token live, userinfo): SQLAlchemy's
    connection, execution context and result cost several times what SQLite spends
    running such a statement. Outside a transaction, as :meth:`Database.reads`.
    """
    plan = statement.plan(bind.dialect, frozenset(params))
    arguments = plan.arguments(params)
    autocommit = bind.dialect.name == "postgresql"
    connection = bind.raw_connection()
    try:
        if autocommit:
            connection.driver_connection.autocommit = True
        cursor = connection.cursor()
        cursor.execute(plan.sql, arguments)
        row = cursor.fetchone()
        cursor.close()
        if autocommit:
            connection.driver_connection.autocommit = False
    except Exception:
        # As SQLAlchemy does after a failed statement: the connection is not reused.
        connection.invalidate()
        raise
    finally:
        connection.close()
    return plan.converted(row)


async def read_row_awaited(
    database: Database, statement: Prebuilt, params: Mapping[str, Any]
) -> tuple[Any, ...] | None:
    """:func:`read_row`, awaited on PostgreSQL (idp/db/awaited.py): the event loop serves
    other requests during the round trip. On SQLite, which answers from the process's
    own file, it is :func:`read_row`."""
    if database.awaited is None:
        return read_row(database.engine, statement, params)
    return await execute_awaited(database, statement, params)


async def execute_awaited(
    database: Database, statement: Prebuilt, params: Mapping[str, Any]
) -> tuple[Any, ...] | None:
    """PostgreSQL: one prebuilt statement, committed on its own, awaited on the event loop
    (idp/db/awaited.py); its first row, converted."""
    if database.awaited is None:
        raise RuntimeError("statements are awaited on PostgreSQL only")
    plan = statement.plan(database.engine.dialect, frozenset(params))
    return plan.converted(await database.awaited.fetchone(plan.sql, plan.arguments(params)))


class LazyUnitOfWork:
    """A unit of work that begins when it is first used, and ends with the block.

    For a request that may not need it: a refresh-token rotation runs its statements
    on a connection of its own and touches the session only when it refuses a token,
    and an ORM session begun and committed for nothing cost the refresh grant about a
    tenth of its time. Any attribute (``execute``, ``get``, ``info``, ...) begins the
    unit of work; leaving the block commits it, or rolls it back on an exception.
    """

    __slots__ = ("_database", "_scope", "_session")

    def __init__(self, database: Database) -> None:
        self._database = database
        self._scope: Any = None
        self._session: Session | None = None

    def __getattr__(self, name: str) -> Any:
        session = self._session
        if session is None:
            self._scope = self._database.unit_of_work()
            session = self._session = self._scope.__enter__()
        return getattr(session, name)

    def __enter__(self) -> LazyUnitOfWork:
        return self

    def __exit__(self, *exc_info: Any) -> bool:
        if self._scope is None:
            return False
        return bool(self._scope.__exit__(*exc_info))


class Database:
    """Owns the engine; hands out units of work (one transaction each), each carrying the
    database's clock (idp.clock)."""

    def __init__(
        self,
        database_url: str,
        *,
        background_checkpoints: bool = False,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        clock: Clock = SYSTEM,
    ) -> None:
        """``background_checkpoints`` (SQLite): commits never checkpoint the WAL; the owner
        calls :meth:`checkpoint` from a background thread instead (the server does).
        ``clock``: the time every unit of work of this database goes by."""
        self.url = database_url
        self.timeouts = timeouts
        self.clock = clock
        self.engine, self._writer = _make_engine(database_url, not background_checkpoints, timeouts)
        self._checkpointer: Any = None
        # Held while the checkpointer's connection is in use or closed: closing an SQLite
        # connection another thread is running a statement on crashes the process.
        self._checkpoint_lock = threading.Lock()
        self._disposed = False
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, info={CLOCK: clock})
        # What other modules keep with this database, as SQLAlchemy's ``info`` dicts.
        self.info: dict[str, Any] = {CLOCK: clock}
        # PostgreSQL: no BEGIN and COMMIT around reads (two round trips of three). SQLite's
        # driver starts no transaction for a SELECT anyway.
        self._reads = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.engine.dialect.name == "postgresql"
            else self.engine
        )
        # PostgreSQL: statements the event loop awaits (idp/db/awaited.py); opened on use.
        self.awaited = (
            AwaitedStatements(database_url, POOL_SIZE, IDLE_PING_SECONDS, timeouts)
            if self.engine.dialect.name == "postgresql"
            else None
        )

    @classmethod
    def of(
        cls, settings: Settings, *, background_checkpoints: bool = False, clock: Clock = SYSTEM
    ) -> Database:
        """The database of ``settings``, with its timeouts, going by ``clock``."""
        return cls(
            settings.database_url,
            background_checkpoints=background_checkpoints,
            timeouts=Timeouts.of(settings),
            clock=clock,
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self.sessions() as session, session.begin():
            yield session

    async def run_sync(self, work: Callable[[], T]) -> T:
        """Run ``work``, blocking database work of a page, where it costs least.

        SQLite answers from a file of this machine in microseconds (its commits do not
        wait for the disk: WAL, ``synchronous=NORMAL``, checkpoints in the background),
        so the work runs at once on the event loop: the hop to a worker thread and back
        cost a page of the authorization flow 150-190 us of CPU, more than its queries.
        A PostgreSQL round trip would hold the loop for its whole wait, so there the work
        runs in a worker thread. Not for work that waits on anything else (a password
        hash, a mail server): that blocks the loop on SQLite.
        """
        if self.dialect == "sqlite":
            return work()
        return await anyio.to_thread.run_sync(work)

    def checkpoint(self) -> bool:
        """SQLite: copy the WAL into the database file once the WAL's file has grown past
        ``CHECKPOINT_PAGES`` pages; True if a checkpoint was asked for. Blocking: call it in
        a thread. (The file keeps its size after a checkpoint, SQLite writing it again from
        the start, so from then on every call asks; with nothing left to copy SQLite
        answers at once, without a write.)

        SQLite's automatic checkpoint runs inside the commit that crosses the limit, with
        two fsyncs: on the event loop that would stall every request for that long. A passive
        checkpoint here runs beside the writers; with several worker processes, the one
        that finds another's checkpoint running skips this round.
        """
        path = self.engine.url.database
        if self.dialect != "sqlite" or not path or path == ":memory:":
            return False
        with self._checkpoint_lock:
            return not self._disposed and self._checkpoint(path)

    def _checkpoint(self, path: str) -> bool:
        try:
            wal_bytes = os.stat(f"{path}-wal").st_size
        except FileNotFoundError:
            return False
        if self._checkpointer is None:
            connection = sqlite3.connect(path, check_same_thread=False, timeout=0)
            page_size = connection.execute("PRAGMA page_size").fetchone()[0]
            self._checkpointer = (connection, page_size)
        connection, page_size = self._checkpointer
        if wal_bytes <= CHECKPOINT_PAGES * page_size:
            return False
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.OperationalError:  # another process is checkpointing
            return False
        return True

    def lazy_unit_of_work(self) -> LazyUnitOfWork:
        """A unit of work begun only if it is used (see :class:`LazyUnitOfWork`)."""
        return LazyUnitOfWork(self)

    def read_session(self) -> Session:
        """An ORM session for reads only, outside a transaction: each statement sees what is
        committed when it runs (close it after use). For hot read-only paths."""
        return self.sessions(bind=self._reads)

    @contextmanager
    def dbapi_connection(self, *, autocommit: bool = False) -> Iterator[Any]:
        """A pooled DB-API connection for a hot path's prebuilt statements.

        SQLAlchemy's work around each statement (compiling, type processing, events)
        costs more than SQLite or PostgreSQL spend running a short one
        (PERFORMANCE.md), so the few statements of a hot path may skip it. Without
        ``autocommit`` the block is one transaction: committed at its end, rolled back
        if it raises; on SQLite it takes the process's writer lock and begins the write
        transaction first, as a write through SQLAlchemy would. With ``autocommit``
        (PostgreSQL only) each statement commits on its own: one round trip, no BEGIN or
        COMMIT.
        """
        connection = self.engine.raw_connection()
        dbapi = connection.dbapi_connection
        try:
            if autocommit:
                if self.dialect != "postgresql":
                    raise ValueError("autocommit statements are for PostgreSQL")
                dbapi.autocommit = True
            elif self._writer is not None:
                self._writer.hold(connection)
                begin(dbapi)
            yield dbapi
            if not autocommit:
                dbapi.commit()
        except BaseException as exc:
            dialect = self.engine.dialect
            if isinstance(exc, dialect.loaded_dbapi.Error) and dialect.is_disconnect(
                exc, dbapi, None
            ):
                # What SQLAlchemy's execute would do: the pool must not hand it out again.
                connection.invalidate(exc)
            elif not autocommit:
                dbapi.rollback()
            raise
        finally:
            try:
                if autocommit and connection.is_valid:
                    dbapi.autocommit = False
            except BaseException as exc:
                connection.invalidate(exc)
                raise
            finally:
                connection.close()

    def writing_here(self) -> bool:
        """Whether this thread already writes to SQLite (a second connection would wait)."""
        return self._writer is not None and self._writer.held_here()

    def dispose(self) -> None:
        # A checkpoint still running in a thread (the server's task was cancelled, its
        # thread was not) finishes first; one started later opens nothing new.
        with self._checkpoint_lock:
            self._disposed = True
            if self._checkpointer is not None:
                self._checkpointer[0].close()
                self._checkpointer = None
        self.engine.dispose()
