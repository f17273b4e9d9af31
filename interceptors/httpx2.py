# Generated from interceptors/httpx.py by `python -m seawall.interceptors._httpx2_gen`: do not edit.
"""httpx2 transports that apply an integration point's policy to every request.

::

    import httpx2, seawall
    from seawall.interceptors import httpx2 as sw_httpx2

    api = seawall.IntegrationPoint("billing-api", retry=seawall.Retry(attempts=3),
                                   timeout=seawall.Timeout(attempt=2.0, total=5.0))
    client = httpx2.Client(transport=sw_httpx2.ResilientTransport(api))
    aclient = httpx2.AsyncClient(transport=sw_httpx2.AsyncResilientTransport(api))

:class:`ResilientTransport` and :class:`AsyncResilientTransport` wrap any
``httpx2.BaseTransport`` / ``httpx2.AsyncBaseTransport`` (by default a
``httpx2.HTTPTransport`` built from ``verify``, ``cert``, ``limits``,
``http2``, ``proxy``... so that nothing a client would have configured is
lost). Each request goes through its point's shell: classification of the
status and of every httpx2 exception, retries only when safe for the method,
``Retry-After``, the attempt timeout narrowing httpx2's own timeouts, the
total deadline, the breaker, the bulkhead and the fallback. Every attempt
is an event whose operation is ``"METHOD host"`` or, with a route table,
``"METHOD host/path/{pattern}"``.

This module is the public face only. The async transport is written once,
in ``_httpx2_async.py``; ``_httpx2_sync.py`` is generated from it by
``python sdk/_unasync.py``. What both decide without I/O lives beside
them: ``_httpx2_classify.py`` (methods, statuses, exceptions),
``_httpx2_routes.py`` (:class:`Route` and the router), ``_httpx2_options.py``
(the validated settings, the attempt's timeout extension),
``_httpx2_body.py`` (replayable bodies), ``_httpx2_call.py`` (a watched
request) and ``_httpx2_inner.py`` (the default inner transport).
"""

from __future__ import annotations

from ._httpx2_async import AsyncResilientTransport
from ._httpx2_body import READ_BODY_EXTENSION
from ._httpx2_classify import (
    EXCEPTION_TABLE,
    IDEMPOTENT_EXTENSION,
    IDEMPOTENT_METHODS,
    RETRY_STATUSES,
    classify_exception,
    parse_retry_after,
    status_classification,
)
from ._httpx2_routes import Route
from ._httpx2_sync import ResilientTransport

__all__ = [
    "EXCEPTION_TABLE",
    "IDEMPOTENT_EXTENSION",
    "IDEMPOTENT_METHODS",
    "READ_BODY_EXTENSION",
    "RETRY_STATUSES",
    "AsyncResilientTransport",
    "ResilientTransport",
    "Route",
    "classify_exception",
    "parse_retry_after",
    "status_classification",
]
