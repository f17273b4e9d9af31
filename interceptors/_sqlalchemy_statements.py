"""The statement hook: each statement observed through the point, never replayed.

The dialect's ``do_execute`` / ``do_executemany`` / ``do_execute_no_params``
become :meth:`Statements.wrap`'s wrapper. Per statement it names the
operation (:func:`operation_of`, cached per statement text, or the user's
``seawall_operation`` label), asks the point's observer for the start
time, the timeout and the breaker's ticket (``observer().start()``; the
breaker judges with ``admit`` only while it is not closed), hands the
timeout to the database (the dialect's strategy, ``_sqlalchemy_timeouts``
/ ``_sqlalchemy_sqlite``), runs the driver call, and tells the observer
the outcome: ``counted`` (or ``succeeded``), ``failed`` (classified as the
:class:`sqlalchemy.exc.DBAPIError` the caller will see, never retried) or
``cancelled``. All counting is the core's (the ledger behind the observer).

Inside a ``run_transaction`` unit (``IN_UNIT``) the unit holds the
breaker's ticket: its statements are recorded with none and never refused.
A statement whose enclosing seawall deadline has already passed is refused
through an :class:`seawall.Execution`, as any call with no time left.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc

from seawall import Classification, DeadlineExceeded, Execution, RejectedError
from seawall._classify import PERMANENT

from ._sqlalchemy_classify import STATEMENT_TIMEOUT_MARK, classify, no_retry
from ._sqlalchemy_state import STATE_ATTR, state_of
from ._sqlalchemy_transactions import IN_UNIT

if TYPE_CHECKING:
    from ._sqlalchemy_hooks import Instrumentation

log = logging.getLogger("seawall.sqlalchemy")

#: Execution option naming a statement's operation for metrics, e.g.
#: ``conn.execution_options(seawall_operation="load cart")``.
OPERATION_OPTION = "seawall_operation"

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


_ROLLBACK_TO = re.compile(r"\s*ROLLBACK\s+(?:WORK\s+|TRANSACTION\s+)?TO\b", re.I)


def labelled(op: str, context: Any) -> str:
    """The operation of a statement: the user's ``seawall_operation`` label, else ``op``."""
    label: str | None = context.execution_options.get(OPERATION_OPTION)
    return op if label is None else label


class Statements:
    """The statement hooks of one instrumented engine, and what they keep between statements.

    ``applied`` turns true once some statement has handed a timeout to the
    database: from then on one without a timeout must reset it. Operation
    names are cached per statement text (bounded).
    """

    def __init__(self, inst: Instrumentation) -> None:
        self.engine = inst.engine
        self.dialect = inst.dialect
        self.dialect_name: str = inst.dialect_name
        self.point = inst.point
        self.observer = inst.point.observer()
        self.first: float | None = self.observer.first_timeout
        self.timeouts = inst.timeouts
        self.always_apply = self.timeouts.always_apply
        self.watch_savepoints = self.timeouts.watches_savepoints
        # some statement has set a timeout: one without must now reset it
        self.applied = inst.attempt_ms is not None and self.always_apply
        self.stoppers = inst.stoppers
        # statement -> (operation, is ROLLBACK TO SAVEPOINT)
        self._ops: dict[str, tuple[str, bool]] = {}
        self._dbapi_error = inst.dbapi_error

    def rule(self, exc: BaseException) -> Classification | None:
        """The integration's exception rule for this engine's dialect."""
        return classify(exc, self.dialect_name)

    def wrap(self, original: Callable[..., Any]) -> Callable[..., None]:
        """What the dialect's ``do_execute`` (or ``do_executemany``) becomes.

        It names the statement, admits it (breaker), hands its timeout to
        the database, runs the driver call itself (``original``) and records
        the outcome, classifying a failure. Inside a ``run_transaction`` unit
        the unit holds the breaker ticket, so the statement is only recorded.
        Every name the hot path needs is bound here, once: a statement costs
        a few attribute reads and two clock reads at most.
        """
        observer = self.observer
        start_work = observer.start
        admit = observer.admit
        counted = observer.counted
        succeeded = observer.succeeded
        cancelled = observer.cancelled
        no_ticket = observer.NO_TICKET
        first = self.first
        ops = self._ops
        name = self._name
        apply_timeout = self._apply_timeout
        failed = self._failed
        timeouts = self.timeouts
        enforces = timeouts.enforces
        # the timeout value in the connection's state that already enforces the usual budget
        steady = timeouts.steady_ms
        steady_known = enforces and steady is not None
        in_unit_now = IN_UNIT.get

        def observed(cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
            if context is None or not live:
                # the dialect's own executions (sequences, defaults): not observed
                original(cursor, statement, parameters, context)
                return
            found = ops.get(statement)
            if found is None:
                found = name(statement)
            op, rollback_to = found  # the user's label replaces op where op is used: labelled()
            started, timeout, ticket = start_work()
            if timeout is not first and timeout is not None and timeout <= 0.0:
                # an enclosing seawall deadline has passed
                if not in_unit_now():
                    self._run_late(labelled(op, context), original, cursor, statement,
                                   parameters, context)
                    return
                timeout = 0.0
            if ticket is None:
                # the breaker must judge (not closed); inside a run_transaction unit (asked
                # only when it matters) the unit holds the breaker's ticket: its statements
                # are recorded with none, and never refused
                ticket = no_ticket if in_unit_now() else admit(labelled(op, context))
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
                    ticket = no_ticket
                failed(exc, labelled(op, context), started, ticket, cursor, statement,
                       parameters, context)
                raise
            except BaseException:  # cancelled: not a failure
                if ticket >= 0 and in_unit_now():
                    ticket = no_ticket
                cancelled(labelled(op, context), started, ticket)
                raise
            if not counted(started, ticket):  # the breaker or a hook must hear of it
                if ticket >= 0 and in_unit_now():
                    ticket = no_ticket
                succeeded(labelled(op, context), started, ticket)
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
            c = self._classified(exc, cursor, statement, parameters, context)
            ex.failure(no_retry(c))  # a statement is never replayed on its own
            ex.end_failure(c)
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
        c = self._classified(exc, cursor, statement, parameters, context)
        # a statement is never replayed on its own: recorded as a failure with no retry
        self.observer.failed(op, started, c, ticket)

    def _classified(self, exc: Exception, cursor: Any, statement: str, parameters: Any,
                    context: Any) -> Classification:
        """The classification of a statement's failure ``exc`` (never raises)."""
        try:
            if self.always_apply and self._interrupted(context):
                # our own statement timeout stopped it: say so where the classifier looks
                setattr(exc, STATEMENT_TIMEOUT_MARK, True)
            seen = self._as_raised(exc, cursor, statement, parameters, context)
            c = self.point.classify_exception(seen, self.rule)
        except Exception:  # never mask the statement's own failure
            log.exception("seawall: classifying a failed statement raised")
            c = PERMANENT
        return c

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
