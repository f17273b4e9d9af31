# Generated from interceptors/_httpx_chaos.py by `python -m seawall.interceptors._httpx2_gen`: do not edit.
"""Fault injection through the httpx2 transports: an injected response, or a transport error.

A point with :class:`seawall.Chaos` runs each request's attempts through
the core's innermost chaos step; this module gives an injected
``Chaos.result`` the transport's own shape, so the point's status rules
judge it as they would the server's answer:

* an ``int`` status (``503``, ``429``...) becomes ``httpx2.Response(status,
  request=request)`` with the ``seawall-injected: 1`` header;
* an ``httpx2.Response`` (with a ``Retry-After`` header, say) is copied for
  each injection, bound to the request.

A transport error needs no shape: ``Chaos(fault=httpx2.ConnectError("down"))``
is raised where the inner transport would raise it, and classified by the
transport's exception table (a connect error is retried for any method).
No I/O.
"""

from __future__ import annotations

from typing import Any

import httpx2

INJECTED_HEADER = "seawall-injected"
"""The header an injected response carries (``1``), so logs can tell it from a real one."""


def injected_response(request: httpx2.Request, result: Any) -> httpx2.Response:
    """The response that stands for ``Chaos.result`` in an attempt of ``request``."""
    if isinstance(result, bool) or not isinstance(result, (int, httpx2.Response)):
        raise TypeError(f"seawall: Chaos.result for httpx2 must be a status code (int) or an "
                        f"httpx2.Response, got {result!r}")
    if isinstance(result, int):
        return httpx2.Response(result, headers={INJECTED_HEADER: "1"}, request=request)
    headers = httpx2.Headers(result.headers)
    headers[INJECTED_HEADER] = "1"
    return httpx2.Response(result.status_code, headers=headers, content=result.content,
                          request=request)
