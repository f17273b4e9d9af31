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

Statements are never replayed by these hooks. Inside a transaction a
failed statement has already aborted the transaction (PostgreSQL) or left
earlier writes whose fate depends on what the caller does next; replaying
just that statement after a reconnect would commit half a unit of work
(the earlier writes died with the old connection). Use
:func:`run_transaction`, which replays the whole unit on a new connection.

Where each part lives (this module only re-exports): ``_sqlalchemy_hooks``
(:func:`instrument`, :func:`uninstrument`: attaching and removing),
``_sqlalchemy_connections`` (connect through the point, liveness at
checkout, bulkhead permits), ``_sqlalchemy_statements`` (the statement
hook, observed through ``point.observer()``), ``_sqlalchemy_transactions``
(:func:`run_transaction`, :func:`arun_transaction`: units of work replayed
whole), ``_sqlalchemy_timeouts`` and ``_sqlalchemy_sqlite`` (statement
timeouts per dialect), ``_sqlalchemy_state`` (what is kept per connection
and per engine), ``_sqlalchemy_classify`` (SQLSTATEs and driver codes),
``_sqlalchemy_chaos`` (:func:`injected_disconnect`, for ``seawall.Chaos``).
The hooks may be used by any number of threads, or tasks of one event loop.
"""

from __future__ import annotations

from ._sqlalchemy_chaos import InjectedDisconnect, injected_disconnect
from ._sqlalchemy_classify import classify
from ._sqlalchemy_hooks import instrument, uninstrument
from ._sqlalchemy_statements import OPERATION_OPTION
from ._sqlalchemy_statements import operation_of as operation_of  # named by tests and tools
from ._sqlalchemy_transactions import arun_transaction, run_transaction

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
