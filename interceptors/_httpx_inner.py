"""The httpx transports' default inner transport: its options, and the environment's proxies.

A resilient transport built without ``transport=`` makes an
``httpx.HTTPTransport`` (or ``AsyncHTTPTransport``) from the options a
client would have taken (``verify``, ``cert``, ``limits``, ``proxy``...),
plus one transport per ``HTTP(S)_PROXY`` / ``ALL_PROXY`` mount the way an
``httpx.Client`` honours them. This module validates those options and
reads the environment; the transports build the objects.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import httpx

from seawall import ConfigurationError

TRANSPORT_OPTIONS = (
    "verify", "cert", "trust_env", "http1", "http2", "limits", "proxy", "uds",
    "local_address", "socket_options",
)


def check_options(transport: object, options: dict[str, Any], owner: str) -> None:
    """Refuse inner-transport options next to a ready-made ``transport``."""
    given = sorted(k for k, v in options.items() if v is not _UNSET)
    if transport is not None and given:
        raise ConfigurationError(
            f"{owner}: {', '.join(given)} configure the default inner transport; "
            f"set them on the transport= you pass instead"
        )


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<default>"


_UNSET: Any = _Unset()
UNSET: Any = _UNSET


def transport_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """The options the caller set, ready for ``httpx.HTTPTransport(**kwargs)``."""
    return {k: v for k, v in options.items() if v is not _UNSET}


def environment_proxy_mounts(kwargs: dict[str, Any]) -> list[tuple[Any, str | None]]:
    """``[(URLPattern, proxy URL or None)]`` from ``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY``.

    Mirrors what an ``httpx.Client`` does when it builds its own transport,
    sorted the way the client sorts its mounts. Empty when ``trust_env`` is
    false, when a ``proxy`` is set explicitly, or when ``uds`` is used.
    """
    if not kwargs.get("trust_env", True) or kwargs.get("proxy") is not None or kwargs.get("uds"):
        return []
    # private names: the version range in pyproject.toml pins them
    from httpx._utils import URLPattern, get_environment_proxies

    found = get_environment_proxies()
    mounts = [(URLPattern(key), url) for key, url in found.items()]
    mounts.sort(key=lambda item: item[0])
    return mounts


def proxied(mounts: Collection[tuple[Any, Any]], url: httpx.URL) -> Any:
    """The transport mounted for ``url``, or ``None`` for the direct one."""
    for pattern, transport in mounts:
        if pattern.matches(url):
            return transport
    return None
