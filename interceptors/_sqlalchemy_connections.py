"""Connections: each new one made through the point, and dead pooled ones replaced.

* ``dialect.connect`` becomes :meth:`Connections.wrap_connect`'s wrapper:
  every new DBAPI connection is a call ``connect`` through an
  :class:`seawall.Execution` (the breaker refuses it while the database is
  known down, connect errors are retried with the point's backoff, a
  server's pause or a rate-limit token is waited for within
  ``Timeout.total``, the attempt timeout becomes the driver's connect
  timeout, and the session's statement timeout is added to the connect
  parameters by the dialect's strategy). Inside a unit of work the connect is the unit's: one attempt,
  adopted with no breaker ticket. The pool's ``connect`` event then keeps
  the session's statement timeout on the pool record (:class:`ConnState`),
  handed over through a context variable.
* ``checkout``: a pooled connection the server has closed is found with one
  non-blocking ``poll`` of its socket (:func:`looks_dead`) and replaced
  before the caller sees it; the bulkhead (``point.permits``) bounds how
  many connections are checked out at once, ``checkin`` / ``detach`` give
  the permit back.
"""

from __future__ import annotations

import os
import select
import stat
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import exc as sa_exc

from seawall import Classification, DeadlineExceeded, Execution, RejectedError

from ._sqlalchemy_classify import DISCONNECT, classify, classify_dbapi, no_retry
from ._sqlalchemy_state import ConnState, set_state, state_of
from ._sqlalchemy_timeouts import connect_timeout_param
from ._sqlalchemy_transactions import IN_UNIT

if TYPE_CHECKING:
    from ._sqlalchemy_hooks import Instrumentation

T = TypeVar("T")


def await_in_greenlet(awaitable: Awaitable[T]) -> T:
    """Wait for ``awaitable`` from a sync hook of an ``AsyncEngine`` (in its greenlet).

    SQLAlchemy names its bridge ``await_`` since 2.1 and ``await_only`` in
    2.0 (2.1 keeps the old name as an alias deprecated for 2.2).
    """
    from sqlalchemy.util import concurrency

    bridge: Callable[[Awaitable[T]], T] = (
        getattr(concurrency, "await_", None) or concurrency.await_only)
    return bridge(awaitable)


# (DBAPI connection, statement timeout of its session in ms) of the connection this
# context just made: on_pool_connect, next in the same call, keeps it on the record
_CONNECTED: ContextVar[tuple[Any, int | None] | None] = ContextVar(
    "seawall_sqlalchemy_connected", default=None)


class Connections:
    """The connect wrapper and the pool hooks of one instrumented engine.

    ``holders`` are the pool records of checked-out connections holding a
    bulkhead permit; set ``add`` / ``remove`` / ``pop`` are atomic, so the
    checkout path takes no lock.
    """

    def __init__(self, inst: Instrumentation) -> None:
        self.point = inst.point
        self.dialect = inst.dialect
        self.dialect_name: str = inst.dialect_name
        self.is_async = inst.is_async
        self.timeouts = inst.timeouts
        self.attempt_ms = inst.attempt_ms
        self.pool_liveness = inst.pool_liveness
        self.permits = inst.point.permits
        self.stoppers = inst.stoppers
        self._dbapi_error = inst.dbapi_error
        self.holders: set[Any] = set()

    # -- connect ----------------------------------------------------------------------

    def connect_rule(self, exc: BaseException) -> Classification | None:
        """A connect's exception rule: a DBAPI error no table knows is a disconnect (retried)."""
        if isinstance(exc, self._dbapi_error):
            found = classify_dbapi(exc, self.dialect_name)
            return found if found is not None else DISCONNECT  # no SQL ran: safe to retry
        return classify(exc, self.dialect_name)

    def _sleep(self, delay: float) -> None:
        if self.is_async:
            await_in_greenlet(self.point.clock.asleep(delay))
        else:
            self.point.clock.sleep(delay)

    def _pause(self, ex: Execution) -> None:
        """Wait the admitted attempt's ``ex.wait`` before connecting; interrupted: never started."""
        try:
            self._sleep(ex.wait)
        except BaseException:
            ex.withdraw()
            ex.cancelled()
            raise

    def wrap_connect(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """What the dialect's ``connect`` becomes (only passes calls on once uninstrumented)."""
        live = True

        def connect(*cargs: Any, **cparams: Any) -> Any:
            if not live:
                return original(*cargs, **cparams)
            return self._connect(original, cargs, cparams)

        def stop() -> None:
            nonlocal live
            live = False

        self.stoppers.append(stop)
        return connect

    def on_pool_connect(self, dbapi_connection: Any, record: Any) -> None:
        """The pool made a connection: note the statement timeout its session started with."""
        made = _CONNECTED.get()
        if made is not None and made[0] is dbapi_connection:
            _CONNECTED.set(None)
            session_ms = made[1]
        else:  # made by a do_connect listener of the user's: the session default is unknown
            session_ms = None  # (PostgreSQL asks it once, at the first statement)
        # kept on the record, out of record.info: that dict is the user's Connection.info
        set_state(record, dbapi_connection, session_ms)

    def _connect(self, original: Callable[..., Any], cargs: tuple[Any, ...],
                 cparams: dict[str, Any]) -> Any:
        """One new DBAPI connection through the point (breaker, retry, connect timeout)."""
        point = self.point
        dialect = self.dialect
        session_ms = self.timeouts.connect_params(cargs, cparams, self.attempt_ms)
        in_unit = IN_UNIT.get()
        ex = Execution(point, "connect")
        last: tuple[Classification, Exception] | None = None
        while True:
            if in_unit:
                ex.adopt(ex.start)  # the unit holds the breaker's ticket
                timeout = ex.remaining()
            else:
                try:
                    timeout = ex.begin(True)
                    if ex.wait > 0.0:  # a server's pause, a rate-limit token: waited here
                        self._pause(ex)
                except (RejectedError, DeadlineExceeded) as refused:
                    if last is not None:  # a retry was refused: the caller sees the real failure
                        ex.stop_reason = f"retry refused: {refused}"
                        ex.end_failure(last[0])
                        ex.annotate(last[1], last[0])
                        raise last[1] from None
                    ex.end_rejected(refused)
                    raise
            params = cparams
            if timeout is not None:
                params = dict(cparams)
                connect_timeout_param(dialect, cargs, params, timeout)
            try:
                raw = original(*cargs, **params)
            except Exception as exc:
                c = point.classify_exception(exc, self.connect_rule)
                delay = ex.failure(no_retry(c) if in_unit else c)
                if delay is None:
                    ex.end_failure(c)
                    ex.annotate(exc, c)
                    raise
                last = (c, exc)
                if delay > 0:
                    self._sleep(delay)
                continue
            except BaseException:
                ex.cancelled()
                raise
            ex.success()
            _CONNECTED.set((raw, session_ms))  # for on_pool_connect, next in this call
            return raw

    # -- checkout ---------------------------------------------------------------------

    def on_checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if self.pool_liveness and looks_dead(dbapi_connection,
                                             state_of(record, dbapi_connection)):
            # the pool invalidates this connection and checks out a fresh one
            raise sa_exc.DisconnectionError("seawall: the server closed this pooled connection")
        permits = self.permits
        if permits is None or IN_UNIT.get():
            return  # a unit of work already holds a permit for its whole attempt
        if not permits.try_acquire():
            self._wait_for_permit(permits)
        self.holders.add(record)

    def _wait_for_permit(self, permits: Any) -> None:
        bulkhead = self.point.bulkhead
        wait = bulkhead.max_wait if bulkhead is not None else 0.0
        if self.is_async:
            got = await_in_greenlet(permits.acquire_async(wait))
        else:
            got = permits.acquire(wait)
        if not got:
            ex = Execution(self.point, "checkout")
            ex.attempts = 1  # bulkhead_rejected() undoes one admitted attempt
            rejection = ex.bulkhead_rejected()
            ex.end_rejected(rejection)
            raise rejection

    def _give_back(self, record: Any) -> None:
        holders = self.holders
        if record in holders:
            try:
                holders.remove(record)  # atomic: this or detach_all gives the permit back
            except KeyError:
                return
            self.permits.release()  # type: ignore[union-attr]

    def on_checkin(self, dbapi_connection: Any, record: Any) -> None:
        if record in self.holders:
            self._give_back(record)

    def on_detach(self, dbapi_connection: Any, record: Any) -> None:
        self._give_back(record)

    def release_all(self) -> None:
        """Give back the permits of connections still checked out (uninstrumented)."""
        holders = self.holders
        while holders:
            try:
                holders.pop()
            except KeyError:  # a checkin took the last one meanwhile
                break
            self.permits.release()  # type: ignore[union-attr]


# -- liveness --------------------------------------------------------------------

_DEAD = select.POLLIN | select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)


def _closed(obj: Any) -> bool:
    """The driver's own word that the connection is closed (psycopg 3: bool, psycopg2: int)."""
    flag = getattr(obj, "closed", False)
    return flag is True or (type(flag) is int and flag != 0)


def socket_of(dbapi_connection: Any) -> int | None:
    """The descriptor of the socket under a network DBAPI connection, or ``None``.

    ``None`` when there is no descriptor to find, when what is found is not
    an ``int`` (a mock DBAPI, a proxy) or not a socket (a pipe, a file), or
    when asking raises: unknown, and unknown means "trust the pool".
    """
    driver = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
    try:
        pgconn = getattr(driver, "pgconn", None)  # psycopg 3, sync and async
        if pgconn is not None:
            fd = pgconn.socket
        else:
            fileno = getattr(driver, "fileno", None)  # psycopg2, mysqlclient
            if not callable(fileno):
                return None
            fd = fileno()
        if type(fd) is not int or fd < 0 or not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return None
    except Exception:
        return None
    return fd


def looks_dead(dbapi_connection: Any, st: ConnState | None = None) -> bool:
    """True when an idle pooled connection has been closed or spoken to by the server.

    An idle connection has nothing to read; bytes (PostgreSQL's FATAL
    ``57P01`` before it hangs up), EOF or an error on its socket mean the
    server dropped it (restart, ``pg_terminate_backend``, idle timeout).
    One non-blocking ``poll``: no round trip. A pending ``LISTEN``
    notification also reads as dead; the connection is then just replaced.
    Only evidence says dead: the driver's ``closed`` flag, or the socket.
    A connection whose socket cannot be found (asyncpg, SQLite, a mock
    DBAPI) is never declared dead: the pool's own checks apply.

    ``st`` keeps the poll object between checkouts. The driver's ``closed``
    flag is read first: libpq closes a socket it found broken (and the
    number may then be reused), but marks the connection bad when it does.
    """
    cached = st.poll if st is not None else None
    if cached is not None:
        if cached is False:
            return False
        driver, poller = cached
        return _closed(driver) or bool(poller.poll(0))
    driver = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
    if _closed(dbapi_connection) or _closed(driver):
        return True
    fd = socket_of(dbapi_connection)
    if fd is None:
        if st is not None:
            st.poll = False
        return False
    poller = select.poll()
    poller.register(fd, _DEAD)
    if st is not None:
        st.poll = (driver, poller)
    return bool(poller.poll(0))
