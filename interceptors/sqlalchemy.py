"""SQLAlchemy engine hooks: one integration point's policy on an ``Engine`` or ``AsyncEngine``.

::

    from seawall.interceptors import sqlalchemy as sw_sa

    engine = sw_sa.instrument(create_engine(url), orders_db)   # same engine, now protected
    total = sw_sa.run_transaction(engine, transfer)            # whole unit retried when safe
    total = await sw_sa.arun_transaction(async_engine, atransfer)
    sw_sa.uninstrument(engine)

What :func:`instrument` attaches, and what each part does. The
statements and connects go through the engine's dialect, whose methods
are wrapped (instance attributes of that engine's dialect, removed again
by :func:`uninstrument`); the pool's events are listened to with
``event.listen`` (on ``sync_engine`` for an ``AsyncEngine``):

* ``dialect.connect``: every new DBAPI connection is a call ``connect``
  through the point: the breaker refuses it at once
  (:class:`seawall.CircuitOpenError`) while the database is known down,
  connect errors are retried with the point's backoff, the attempt
  timeout becomes the driver's connect timeout, and the attempt timeout
  becomes the session's statement timeout (both merged with the user's own
  connect parameters, never replacing them; see ``_sqlalchemy_timeouts``).
  ``do_connect`` listeners of your own run first and see only the URL's and
  ``connect_args``' parameters; one that makes the connection itself takes
  it past seawall.
* ``checkout`` (pool): a pooled connection the server has closed (restart,
  ``pg_terminate_backend``, idle timeout) is detected with one non-blocking
  ``poll`` of its socket and replaced before the caller sees it; the
  point's bulkhead bounds how many connections are checked out at once
  (waiting at most ``max_wait``, then :class:`seawall.BulkheadFullError`).
  ``checkin``/``detach`` give the permit back (listened to only with a
  bulkhead); ``connect`` notes the session's statement timeout.
* ``dialect.do_execute`` / ``do_execute_no_params`` / ``do_executemany``:
  every statement is one call through the point, named by a
  low-cardinality operation (the statement kind and table, e.g.
  ``"select accounts"``, or the user's label in the execution option
  ``seawall_operation``), gated by the breaker, classified from SQLSTATEs
  and driver codes (as the :class:`sqlalchemy.exc.DBAPIError` the caller
  gets), with its timeout enforced by the database (see
  ``_sqlalchemy_timeouts``). ``do_execute`` listeners of your own run
  first; one that runs the statement itself takes it past seawall.

Why wrap methods rather than listen to the dialect's events: any
dialect-level listener makes SQLAlchemy walk its listener collections
around every statement, and a Connection-level one (``before_cursor_execute``,
``commit``, ...) makes it fire engine events around every checkout and
statement too. Counted with callgrind on a PostgreSQL ``SELECT 1``, the
event route cost 4.7k CPU instructions per statement before seawall did
any work; the wrapper costs 1.9k.

Statements are never replayed by these hooks. Inside a transaction a
failed statement has already aborted the transaction (PostgreSQL) or left
earlier writes whose fate depends on what the caller does next; replaying
just that statement after a reconnect would commit half a unit of work
(the earlier writes died with the old connection). Use
:func:`run_transaction`, which replays the whole unit on a new connection.

Thread and task safety: the hooks keep per-connection state only on the
pool record (an attribute of its own, never the record's ``info``, which
is the application's ``Connection.info``), and hand a new connection's
session timeout from the connect wrapper to the pool's ``connect`` event
through a context variable; one instrumented engine may be used by any
number of threads, or tasks of one event loop.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar, overload

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from seawall import (
    Classification,
    ConfigurationError,
    DeadlineExceeded,
    Execution,
    IntegrationPoint,
    RejectedError,
)
from seawall._breaker import CLOSED, REJECTED
from seawall._classify import PERMANENT
from seawall._deadline import DEADLINE
from seawall._events import GLOBAL_HOOKS
from seawall._point import _add_note

from ._sqlalchemy_chaos import InjectedDisconnect, injected_disconnect
from ._sqlalchemy_classify import (
    DISCONNECT,
    STATEMENT_TIMEOUT_MARK,
    classify,
    classify_dbapi,
    sqlstate,
)
from ._sqlalchemy_timeouts import (
    STATE_ATTR,
    connect_timeout_param,
    dbapi_of,
    looks_dead,
    set_state,
    state_of,
    timeouts_for,
    to_ms,
)

try:  # AsyncEngine needs greenlet (the ``asyncio`` extra)
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
except ImportError:  # pragma: no cover - greenlet missing
    AsyncEngine = None  # type: ignore[assignment,misc]
    AsyncConnection = None  # type: ignore[assignment,misc]

__all__ = [
    "OPERATION_OPTION",
    "InjectedDisconnect",
    "arun_transaction",
    "classify",
    "injected_disconnect",
    "instrument",
    "run_transaction",
    "uninstrument",
]

#: Execution option naming a statement's operation for metrics, e.g.
#: ``conn.execution_options(seawall_operation="load cart")``.
OPERATION_OPTION = "seawall_operation"

T = TypeVar("T")
E = TypeVar("E", bound=Any)

# True while a run_transaction unit runs: the unit is then the breaker's and
# the retry's unit, and the statements and connects inside it are recorded
# as events only (no breaker ticket, no retry, no second bulkhead permit).
_IN_UNIT: ContextVar[bool] = ContextVar("seawall_sqlalchemy_unit", default=False)

_STATE_ATTR = "_seawall_instrumentation"

log = logging.getLogger("seawall.sqlalchemy")


def _await_in_greenlet(awaitable: Awaitable[T]) -> T:
    """Wait for ``awaitable`` from a sync hook of an ``AsyncEngine`` (in its greenlet).

    SQLAlchemy names its bridge ``await_`` since 2.1 and ``await_only`` in
    2.0 (2.1 keeps the old name as an alias deprecated for 2.2).
    """
    from sqlalchemy.util import concurrency

    bridge: Callable[[Awaitable[T]], T] = (
        getattr(concurrency, "await_", None) or concurrency.await_only)
    return bridge(awaitable)


# -- operation names ----------------------------------------------------------------

_IDENT = r'("[^"]{1,63}"|`[^`]{1,63}`|[A-Za-z_][\w$]{0,62})(?:\s*\.\s*("[^"]{1,63}"|`[^`]{1,63}`|[A-Za-z_][\w$]{0,62}))?'
_VERB = re.compile(r"\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*([A-Za-z]+)", re.S)
_TABLE = {
    "select": re.compile(r"\bFROM\s+" + _IDENT, re.I),
    "delete": re.compile(r"\bFROM\s+" + _IDENT, re.I),
    "insert": re.compile(r"\bINTO\s+" + _IDENT, re.I),
    "replace": re.compile(r"\bINTO\s+" + _IDENT, re.I),
    "merge": re.compile(r"\bINTO\s+" + _IDENT, re.I),
    "update": re.compile(r"\s+(?:ONLY\s+)?" + _IDENT, re.I),  # right after the verb
}
_OP_CACHE_LIMIT = 2048


def operation_of(statement: str) -> str:
    """``"<kind> <table>"`` (e.g. ``"select accounts"``) or just the kind; never values."""
    m = _VERB.match(statement)
    if m is None:
        return "statement"
    verb = m.group(1).lower()
    finder = _TABLE.get(verb)
    if finder is None:
        return verb
    t = (finder.match if verb == "update" else finder.search)(statement, m.end())
    if t is None:
        return verb
    table = (t.group(2) or t.group(1)).strip('"`')
    return f"{verb} {table}"


# -- the instrumentation ----------------------------------------------------------------


def _no_retry(c: Classification) -> Classification:
    return c.with_retry(False) if c.retry else c


_ROLLBACK_TO = re.compile(r"\s*ROLLBACK\s+(?:WORK\s+|TRANSACTION\s+)?TO\b", re.I)

# (DBAPI connection, statement timeout of its session in ms) of the connection this
# context just made: on_pool_connect, next in the same call, keeps it on the record
_CONNECTED: ContextVar[tuple[Any, int | None] | None] = ContextVar(
    "seawall_sqlalchemy_connected", default=None)


def _labelled(op: str, context: Any) -> str:
    """The operation of a statement: the user's ``seawall_operation`` label, else ``op``."""
    label: str | None = context.execution_options.get(OPERATION_OPTION)
    return op if label is None else label


class _Instrumentation:
    """The hooks of one engine and the state they share.

    Statements and connects are observed by wrapping the dialect's own
    methods (see the module docstring for why not its events); the pool's
    events are listened to. Nothing is attached at the Connection level.
    """

    def __init__(self, engine: Engine, point: IntegrationPoint, pool_liveness: bool) -> None:
        self.engine = engine
        self.point = point
        dialect = engine.dialect
        self.dialect = dialect
        self.dialect_name: str = dialect.name
        self.is_async = bool(getattr(dialect, "is_async", False))
        self.first: float | None = point._first_timeout
        self.timeouts = timeouts_for(dialect, self.first)
        self.always_apply = self.timeouts.always_apply
        self.watch_savepoints = self.timeouts.watches_savepoints
        attempt = point.timeout.attempt if point.timeout is not None else None
        self.attempt_ms = to_ms(attempt) if attempt is not None else None
        self.pool_liveness = pool_liveness
        # some statement has set a timeout: one without must now reset it
        self.applied = self.attempt_ms is not None and self.always_apply
        self.listeners: list[tuple[str, Callable[..., Any]]] = []  # pool events
        self.wrapped: list[tuple[str, Callable[..., Any]]] = []  # the dialect's methods
        # turn the wrappers off: one left in place (wrapped in turn by someone else)
        # then only passes calls on
        self.stoppers: list[Callable[[], None]] = []
        self.permits = point._permits
        # pool records of checked-out connections holding a bulkhead permit; set
        # add / remove / pop are atomic, so no lock is needed on the checkout path
        self.holders: set[Any] = set()
        # statement -> (operation, is ROLLBACK TO SAVEPOINT)
        self._ops: dict[str, tuple[str, bool]] = {}
        error = getattr(dbapi_of(dialect), "Error", None)
        # a mock DBAPI's Error may be no exception class at all: then nothing is a DBAPI error
        self._dbapi_error: type[Exception] | tuple[()] = (
            error if isinstance(error, type) and issubclass(error, Exception) else ())

    # -- rules ----------------------------------------------------------------

    def rule(self, exc: BaseException) -> Classification | None:
        """The integration's exception rule for this engine's dialect."""
        return classify(exc, self.dialect_name)

    def unit_rule(self, exc: BaseException) -> Classification | None:
        """As :meth:`rule`, but a unit whose COMMIT had an unknown outcome is never replayed.

        The exception then says why it was not (a note), as every other give-up does.
        """
        c = classify(exc, self.dialect_name)
        unknown = getattr(exc, _COMMIT_UNKNOWN, None)
        if c is not None and unknown is not None:
            if c.retry and isinstance(unknown, str):
                _add_note(exc, unknown)
                setattr(exc, _COMMIT_UNKNOWN, True)  # noted once
            return _no_retry(c)
        return c

    def connect_rule(self, exc: BaseException) -> Classification | None:
        if isinstance(exc, self._dbapi_error):
            found = classify_dbapi(exc, self.dialect_name)
            return found if found is not None else DISCONNECT  # no SQL ran: safe to retry
        return classify(exc, self.dialect_name)

    # -- attaching --------------------------------------------------------------

    def attach(self) -> None:
        """Wrap the dialect's methods and listen to the pool's events this policy needs."""
        dialect = self.dialect
        if dialect.__dict__.get(_STATE_ATTR) is not None:
            raise ConfigurationError(
                f"the dialect of {self.engine!r} is already instrumented (an engine made with "
                "execution_options() shares its dialect with the engine it came from)"
            )
        # every pool listener has a price even when it does nothing (SQLAlchemy's
        # dispatch): checkout / checkin only when something needs them
        hooks: list[tuple[str, Callable[..., Any]]] = [("connect", self.on_pool_connect)]
        if self.pool_liveness or self.permits is not None:
            hooks.append(("checkout", self.on_checkout))
        if self.permits is not None:
            hooks += [("checkin", self.on_checkin), ("detach", self.on_detach)]
        for name, fn in hooks:
            event.listen(self.engine, name, fn)
            self.listeners.append((name, fn))
        observe = self._statement_wrapper(dialect.do_execute)
        many = self._statement_wrapper(dialect.do_executemany)
        no_params_call = dialect.do_execute_no_params

        def with_params(cursor: Any, statement: str, _parameters: Any, context: Any) -> None:
            no_params_call(cursor, statement, context)

        observe_no_params = self._statement_wrapper(with_params)

        def no_params(cursor: Any, statement: str, context: Any = None) -> None:
            observe_no_params(cursor, statement, None, context)

        wrappers = {"connect": self._connect_wrapper(dialect.connect), "do_execute": observe,
                    "do_executemany": many, "do_execute_no_params": no_params}
        for name, fn in wrappers.items():
            setattr(dialect, name, fn)  # an instance attribute: found before the class's method
            self.wrapped.append((name, fn))
        dialect.__dict__[_STATE_ATTR] = self

    def detach_all(self) -> None:
        for name, fn in self.listeners:
            event.remove(self.engine, name, fn)
        self.listeners.clear()
        for stop in self.stoppers:
            stop()
        self.timeouts.close()
        dialect_dict = self.dialect.__dict__
        for name, fn in self.wrapped:
            if dialect_dict.get(name) is fn:
                del dialect_dict[name]
        self.wrapped.clear()
        dialect_dict.pop(_STATE_ATTR, None)
        holders = self.holders  # give back the permits of connections still checked out
        while holders:
            try:
                holders.pop()
            except KeyError:  # a checkin took the last one meanwhile
                break
            self.permits.release()  # type: ignore[union-attr]

    # -- connect ----------------------------------------------------------------------

    def _sleep(self, delay: float) -> None:
        if self.is_async:
            _await_in_greenlet(self.point.clock.asleep(delay))
        else:
            self.point.clock.sleep(delay)

    def _connect_wrapper(self, original: Callable[..., Any]) -> Callable[..., Any]:
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
        in_unit = _IN_UNIT.get()
        ex = Execution(point, "connect")
        last: tuple[Classification, Exception] | None = None
        while True:
            if in_unit:
                ex._adopt_first(ex.start, REJECTED)
                timeout = ex.remaining()
            else:
                try:
                    timeout = ex.begin()
                except (RejectedError, DeadlineExceeded) as refused:
                    if last is not None:  # a retry was refused: the caller sees the real failure
                        ex.stop_reason = f"retry refused: {refused}"
                        ex.end_failure(last[0])
                        _add_note(last[1], ex.describe(last[0]))
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
                delay = ex.failure(_no_retry(c) if in_unit else c)
                if delay is None:
                    ex.end_failure(c)
                    if ex.attempts > 1 or ex.stop_reason:
                        _add_note(exc, ex.describe(c))
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
        if permits is None or _IN_UNIT.get():
            return  # a unit of work already holds a permit for its whole attempt
        if not permits.try_acquire():
            self._wait_for_permit(permits)
        self.holders.add(record)

    def _wait_for_permit(self, permits: Any) -> None:
        wait = self.point._max_wait
        if self.is_async:
            got = _await_in_greenlet(permits.acquire_async(wait))
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

    # -- statements -------------------------------------------------------------------

    def _statement_wrapper(self, original: Callable[..., Any]) -> Callable[..., None]:
        """What the dialect's ``do_execute`` (or ``do_executemany``) becomes.

        It names the statement, admits it (breaker), hands its timeout to
        the database, runs the driver call itself (``original``) and records
        the outcome, classifying a failure. Inside a ``run_transaction`` unit
        the unit holds the breaker ticket, so the statement is only recorded.
        Every name the hot path needs is bound here, once: a statement costs
        a few attribute reads and two clock reads at most.
        """
        point = self.point
        now = point._now
        circuit = point.circuit
        # with no slow-call threshold no success is slow, and one more success leaves a
        # window of successes only as it is: the breaker then needs no word of it
        skip_clean = circuit is not None and point._slow == math.inf
        record_success = point.record_success
        # a success with no breaker ticket and no event hook only counts (as record_success
        # would, without its call): one counter step, and a budget mark at bucket boundaries
        count_ok = point._fast_ok.__next__
        point_hooks = point.hooks
        global_hooks = GLOBAL_HOOKS
        budget_tick = point._budget_tick
        first = self.first
        ops = self._ops
        name = self._name
        apply_timeout = self._apply_timeout
        timeouts = self.timeouts
        enforces = timeouts.enforces
        # the timeout value in the connection's state that already enforces the usual budget
        steady = timeouts.steady_ms
        steady_known = enforces and steady is not None
        in_unit_now = _IN_UNIT.get
        deadline_now = DEADLINE.get
        labelled = _labelled

        def observed(cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
            if context is None or not live:
                # the dialect's own executions (sequences, defaults): not observed
                original(cursor, statement, parameters, context)
                return
            found = ops.get(statement)
            if found is None:
                found = name(statement)
            op, rollback_to = found  # the user's label replaces op where op is used: labelled()
            started = now()
            timeout = first
            outer = deadline_now()
            if outer is not None and outer[1] is now:
                left = outer[0] - started
                if timeout is None or left < timeout:
                    if left <= 0.0:
                        if not in_unit_now():
                            self._run_late(labelled(op, context), original, cursor, statement,
                                           parameters, context)
                            return
                        left = 0.0
                    timeout = left
            # inside a run_transaction unit (asked only when it matters) the unit holds the
            # breaker's ticket: its statements are recorded with none, and never refused
            if circuit is None:
                ticket = REJECTED
            elif circuit.state is CLOSED:
                ticket = circuit.generation
            elif in_unit_now():
                ticket = REJECTED
            else:
                ticket = point.admit(labelled(op, context))  # raises CircuitOpenError, counted
            if timeout is first and steady_known and not rollback_to:
                # the common case, without a call: is the usual budget already in force?
                try:
                    record = context._dbapi_connection._connection_record
                    st = record._seawall_state  # STATE_ATTR
                    fresh = (st.timeout != steady or st.session_ms != steady
                             or st.dbapi is not record.dbapi_connection)
                except AttributeError:
                    # no state yet (the dialect's first-connect queries, a connection made
                    # before instrument()), no record (detached), or a stale state: the long way
                    fresh = True
                if fresh:
                    apply_timeout(context, timeout, False)
            elif enforces and (timeout is not None or rollback_to or self.applied):
                apply_timeout(context, timeout, rollback_to)
            try:
                original(cursor, statement, parameters, context)
            except Exception as exc:
                if ticket >= 0 and in_unit_now():
                    ticket = REJECTED
                self._failed(exc, labelled(op, context), started, ticket, cursor, statement,
                             parameters, context)
                raise
            except BaseException:  # cancelled: not a failure
                if ticket >= 0 and not in_unit_now():
                    point.release(ticket)
                point._record_cancel(labelled(op, context), started)
                raise
            if ticket >= 0 and ((skip_clean and circuit.clean)  # type: ignore[union-attr]
                                or in_unit_now()):
                ticket = REJECTED
            if ticket < 0 and not (point_hooks.hooks or global_hooks.hooks):
                count_ok()
                if started >= point._budget_next:
                    budget_tick(started)
            else:
                record_success(labelled(op, context), started, ticket)
        live = True

        def stop() -> None:  # uninstrumented: a wrapper still called only passes calls on
            nonlocal live
            live = False

        self.stoppers.append(stop)
        return observed

    def _run_late(self, op: str, original: Callable[..., Any], cursor: Any, statement: str,
                  parameters: Any, context: Any) -> None:
        """The enclosing deadline has passed: refuse the statement as an Execution does."""
        ex = Execution(self.point, op)
        try:
            timeout = ex.begin()
        except (RejectedError, DeadlineExceeded) as refused:
            ex.end_rejected(refused)
            raise
        # admitted after all (a clock that moved back): run it the long way
        self._apply_timeout(context, timeout, False)
        try:
            original(cursor, statement, parameters, context)
        except Exception as exc:
            self._failed(exc, op, ex.attempt_start, ex._ticket, cursor, statement, parameters,
                         context)
            raise
        except BaseException:
            ex.cancelled()
            raise
        ex.success()

    def _apply_timeout(self, context: Any, timeout: float | None, rollback_to: bool) -> None:
        """Hand ``timeout`` to the database (see ``_sqlalchemy_timeouts``) for the next statement.

        ``applied`` turns true with the first timeout: from then on a
        statement without one resets the limit an earlier one left.
        """
        timeouts = self.timeouts
        fairy = context._dbapi_connection
        # state kept on the pool record (the ad-hoc connection SQLAlchemy builds for the
        # dialect's first-connect queries has the real record); a detached fairy keeps its own
        record = fairy._connection_record
        st = state_of(record if record is not None else fairy, fairy.dbapi_connection)
        if timeout is not None and not self.applied:
            self.applied = timeouts.always_apply
        if timeout is not None or self.applied:
            timeouts.apply(context, fairy, st, timeout)
        if rollback_to and self.watch_savepoints:
            # what the ROLLBACK TO SAVEPOINT about to run undoes is unknown afterwards
            timeouts.savepoint_rolled_back(st)

    def _name(self, statement: str) -> tuple[str, bool]:
        ops = self._ops
        if len(ops) >= _OP_CACHE_LIMIT:
            ops.clear()
        found = ops[statement] = (operation_of(statement), _ROLLBACK_TO.match(statement) is not None)
        return found

    def _interrupted(self, context: Any) -> bool:
        fairy = context._dbapi_connection
        if fairy is None:
            return False
        record = fairy._connection_record
        st = getattr(record if record is not None else fairy, STATE_ATTR, None)
        return st is not None and st.dbapi is fairy.dbapi_connection and self.timeouts.interrupted(st)

    def _failed(self, exc: Exception, op: str, started: float, ticket: int, cursor: Any,
                statement: str, parameters: Any, context: Any) -> None:
        """Classify and record a statement's failure (the caller then re-raises ``exc``)."""
        try:
            if self.always_apply and self._interrupted(context):
                # our own statement timeout stopped it: say so where the classifier looks
                setattr(exc, STATEMENT_TIMEOUT_MARK, True)
            seen = self._as_raised(exc, cursor, statement, parameters, context)
            c = self.point.classify_exception(seen, self.rule)
        except Exception:  # never mask the statement's own failure
            log.exception("seawall: classifying a failed statement raised")
            c = PERMANENT
        # a statement is never replayed on its own: recorded as a failure with no retry
        self.point.record_failure(op, started, c, ticket)

    def _as_raised(self, exc: Exception, cursor: Any, statement: str, parameters: Any,
                   context: Any) -> BaseException:
        """The exception the caller will see for ``exc``: SQLAlchemy's wrapper of a DBAPI error.

        Built the way ``Connection`` builds it (after this hook returns), with
        the dialect's disconnect verdict, so classifiers see the same type
        and the same ``connection_invalidated`` flag as the caller.
        """
        dbapi_error = self._dbapi_error
        if not isinstance(exc, dbapi_error) or not isinstance(dbapi_error, type):
            return exc
        try:
            disconnect = bool(self.dialect.is_disconnect(
                exc, context._dbapi_connection, cursor))  # type: ignore[arg-type]
        except Exception:
            disconnect = False
        return sa_exc.DBAPIError.instance(
            statement, parameters, exc, dbapi_error,
            hide_parameters=self.engine.hide_parameters, connection_invalidated=disconnect,
            dialect=self.dialect, ismulti=context.executemany,
        )

# -- public API ------------------------------------------------------------------------


def _sync_engine(engine: Any) -> Engine:
    target = getattr(engine, "sync_engine", engine)
    if not isinstance(target, Engine):
        raise ConfigurationError(
            f"expected a sqlalchemy Engine or AsyncEngine, got {type(engine).__name__}"
        )
    return target


def _state_of(engine: Any) -> _Instrumentation:
    target: Any = _sync_engine(engine)
    while target is not None:
        state = target.__dict__.get(_STATE_ATTR)
        if state is not None:
            return state  # type: ignore[no-any-return]
        target = target.__dict__.get("_proxied")  # engine.execution_options(...) copies
    raise ConfigurationError(
        f"{engine!r} is not instrumented: call seawall.interceptors.sqlalchemy.instrument(engine, point)"
    )


@overload
def instrument(engine: Engine, point: IntegrationPoint, *, pool_liveness: bool = True) -> Engine: ...


@overload
def instrument(engine: E, point: IntegrationPoint, *, pool_liveness: bool = True) -> E: ...


def instrument(engine: Any, point: IntegrationPoint, *, pool_liveness: bool = True) -> Any:
    """Apply ``point``'s policy to every connect, checkout and statement of ``engine``.

    ``engine`` is a sync :class:`~sqlalchemy.engine.Engine` or an
    :class:`~sqlalchemy.ext.asyncio.AsyncEngine` (hooks go on its
    ``sync_engine``); the same object is returned, usable exactly as
    before. ``pool_liveness`` (default on) checks each pooled connection's
    socket at checkout, without a round trip, and replaces one the server
    closed; turn it off if you use ``LISTEN`` on pooled connections, and
    prefer ``pool_pre_ping=True`` for drivers whose socket is not
    reachable (asyncpg): a connection whose socket cannot be found is
    trusted, never declared dead. Raises :class:`seawall.ConfigurationError`
    if the engine is already instrumented.
    """
    if not isinstance(point, IntegrationPoint):
        raise ConfigurationError(f"instrument() needs an IntegrationPoint, got {point!r}")
    target = _sync_engine(engine)
    if target.__dict__.get(_STATE_ATTR) is not None:
        raise ConfigurationError(f"{engine!r} is already instrumented; uninstrument() it first")
    state = _Instrumentation(target, point, pool_liveness)
    state.attach()
    target.__dict__[_STATE_ATTR] = state
    return engine


def uninstrument(engine: Any) -> None:
    """Remove every hook :func:`instrument` attached (idempotent).

    Connections opened while instrumented keep their session statement
    timeout until they are closed; call ``engine.dispose()`` to drop them.
    """
    target = _sync_engine(engine)
    state = target.__dict__.pop(_STATE_ATTR, None)
    if state is not None:
        state.detach_all()


# attribute of a COMMIT failure whose outcome is unknown: the note to add (True once added)
_COMMIT_UNKNOWN = "_seawall_commit_unknown"


def _commit_failed(exc: BaseException, point: str, operation: str) -> None:
    """Mark a COMMIT failure whose outcome is unknown (connection lost): never replay it."""
    definite = False
    if isinstance(exc, sa_exc.DBAPIError) and not exc.connection_invalidated:
        orig = exc.orig
        state = sqlstate(orig)
        if state is not None:
            definite = state[:2] not in ("08", "57")  # the server answered: rolled back
        elif getattr(orig, "sqlite_errorcode", None) is not None:
            definite = True  # SQLite: COMMIT failed locally (busy), nothing was written
    if not definite:
        note = (f"seawall: {point} {operation}: not replayed: the connection was lost during "
                "COMMIT, so whether the unit was committed is unknown (a replay could apply it "
                "twice)")
        try:
            setattr(exc, _COMMIT_UNKNOWN, note)
        except AttributeError:  # pragma: no cover - exotic exception types
            pass


def run_transaction(engine: Any, work: Callable[[Connection], T], *,
                    operation: str = "transaction", isolation_level: str | None = None) -> T:
    """Run ``work(connection)`` in one transaction; replay the whole unit on transient failures.

    Each attempt checks out a connection, begins a transaction
    (``isolation_level``, e.g. ``"SERIALIZABLE"``, when given), calls
    ``work`` and commits. A disconnect, serialization failure, deadlock,
    lock not available or SQLite busy rolls the attempt back and runs
    ``work`` again on a fresh connection, with the point's backoff, budget,
    breaker and deadline; the unit is one call named ``operation``. A
    COMMIT whose outcome is unknown (the connection died during it) is not
    replayed. ``work`` must not commit itself and must have no side effects
    outside the database (it may run more than once). The statement timeout
    of each statement is what is left of the attempt's budget.
    """
    state = _state_of(engine)

    def attempt(_timeout: float | None) -> T:
        token = _IN_UNIT.set(True)
        try:
            with engine.connect() as conn:
                if isolation_level is not None:
                    conn.execution_options(isolation_level=isolation_level)
                trans = conn.begin()
                try:
                    result = work(conn)
                except BaseException:
                    # roll back only a transaction still the connection's, as engine.begin()
                    # does: work's own conn.rollback(), or an ORM Session(bind=conn) whose
                    # flush failed, may have ended it already (a second rollback would warn
                    # "transaction already deassociated from connection")
                    if trans.is_active or conn.get_transaction() is trans:
                        try:
                            trans.rollback()
                        except Exception:  # the original failure is what matters
                            pass
                    raise
                if trans.is_active:
                    try:
                        trans.commit()
                    except Exception as exc:
                        _commit_failed(exc, state.point.name, operation)
                        try:  # never hand a half-finished transaction back to the pool
                            conn.invalidate()
                        except Exception:
                            pass
                        raise
                return result
        finally:
            _IN_UNIT.reset(token)

    return state.point.run(attempt, operation=operation, classify_exception=state.unit_rule)


def _still_current(conn: Any, trans: Any) -> bool:
    """Is the AsyncTransaction ``trans`` still the transaction of the AsyncConnection ``conn``?"""
    sync = conn.sync_connection
    return sync is not None and sync.get_transaction() is trans.sync_transaction


async def arun_transaction(engine: Any, work: Callable[[Any], Awaitable[T]], *,
                           operation: str = "transaction",
                           isolation_level: str | None = None) -> T:
    """The :class:`~sqlalchemy.ext.asyncio.AsyncEngine` twin of :func:`run_transaction`.

    ``work`` is ``async def work(conn: AsyncConnection)``. The database
    enforces the attempt's budget (statement timeout), so the attempt is not
    cancelled client-side: cancelling a running asyncio statement costs a
    reconnect. Cancelling the caller cancels the unit and is not a failure.
    """
    state = _state_of(engine)

    async def attempt(_timeout: float | None) -> T:
        token = _IN_UNIT.set(True)
        try:
            async with engine.connect() as conn:
                if isolation_level is not None:
                    await conn.execution_options(isolation_level=isolation_level)
                trans = conn.begin()
                await trans.start()
                try:
                    result = await work(conn)
                except BaseException:
                    # only a transaction still the connection's (see run_transaction)
                    if trans.is_active or _still_current(conn, trans):
                        try:
                            await trans.rollback()
                        except Exception:
                            pass
                    raise
                if trans.is_active:
                    try:
                        await trans.commit()
                    except Exception as exc:
                        _commit_failed(exc, state.point.name, operation)
                        try:  # never hand a half-finished transaction back to the pool
                            await conn.invalidate()
                        except Exception:
                            pass
                        raise
                return result
        finally:
            _IN_UNIT.reset(token)

    return await state.point.arun(attempt, operation=operation,
                                  classify_exception=state.unit_rule, enforce_timeout=False)
