"""Fault injection for SQLAlchemy: a DBAPI-shaped error that reads as a lost connection.

``Chaos(fault=sw_sa.injected_disconnect)`` (a zero-argument factory) makes
each injection a fresh :class:`sqlalchemy.exc.OperationalError` flagged
``connection_invalidated``, wrapping an :class:`InjectedDisconnect` as its
DBAPI error (``orig``): what SQLAlchemy raises when the dialect's
``is_disconnect`` recognises a dropped connection. The integration's
classifier reads the flag, never the text, so the injected error is a
disconnect: the unit of work is retried (``run_transaction`` /
``arun_transaction``, whose attempts the point's chaos step wraps) and
the breaker counts it.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

INJECTED_STATEMENT = "-- seawall: injected disconnect"


class InjectedDisconnect(Exception):
    """The DBAPI-level error inside an injected disconnect (its ``orig``)."""


def injected_disconnect(message: str = "seawall: injected disconnect") -> sa_exc.OperationalError:
    """A fresh injected disconnect: an ``OperationalError`` with ``connection_invalidated`` set.

    Pass the function itself as ``seawall.Chaos(fault=...)``; ``message``
    is the DBAPI error's text (shown to the caller, never classified).
    """
    return sa_exc.OperationalError(INJECTED_STATEMENT, None, InjectedDisconnect(message),
                                   connection_invalidated=True)
