"""httpx transports that apply an integration point's policy to every request.

::

    import httpx, seawall
    from seawall.interceptors import httpx as sw_httpx

    api = seawall.IntegrationPoint("billing-api", retry=seawall.Retry(attempts=3),
                                   timeout=seawall.Timeout(attempt=2.0, total=5.0))
    client = httpx.Client(transport=sw_httpx.ResilientTransport(api))
    aclient = httpx.AsyncClient(transport=sw_httpx.AsyncResilientTransport(api))

:class:`ResilientTransport` and :class:`AsyncResilientTransport` wrap any
``httpx.BaseTransport`` / ``httpx.AsyncBaseTransport`` (by default a
``httpx.HTTPTransport`` built from ``verify``, ``cert``, ``limits``,
``http2``, ``proxy``... so that nothing a client would have configured is
lost). Each request goes through its point's shell: classification of the
status and of every httpx exception, retries only when safe for the method,
``Retry-After``, the attempt timeout narrowing httpx's own timeouts, the
total deadline, the breaker, the bulkhead and the fallback. Every attempt
is an event whose operation is ``"METHOD host"`` or, with a route table,
``"METHOD host/path/{pattern}"``.

This module is the public face only. The async transport is written once,
in ``_httpx_async.py``; ``_httpx_sync.py`` is generated from it by
``python sdk/_unasync.py``. What both decide without I/O lives beside
them: ``_httpx_classify.py`` (methods, statuses, exceptions),
``_httpx_routes.py`` (:class:`Route` and the router), ``_httpx_options.py``
(the validated settings, the attempt's timeout extension),
``_httpx_body.py`` (replayable bodies), ``_httpx_call.py`` (a watched
request) and ``_httpx_inner.py`` (the default inner transport).
"""

from __future__ import annotations

from ._httpx_async import AsyncResilientTransport
from ._httpx_body import READ_BODY_EXTENSION
from ._httpx_classify import (
    EXCEPTION_TABLE,
    IDEMPOTENT_EXTENSION,
    IDEMPOTENT_METHODS,
    RETRY_STATUSES,
    classify_exception,
    parse_retry_after,
    status_classification,
)
from ._httpx_routes import Route
from ._httpx_sync import ResilientTransport

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
