"""Write the httpx2 twin of the httpx transports: ``httpx2.py`` and ``_httpx2_policy.py``.

httpx2 (with httpcore2) continues httpx 0.28.1 under a new name with the
same transport API, but its classes are distinct: an ``httpx.Response`` is
not an ``httpx2.Response``, and a transport for one client cannot be typed
as the other's. So each package gets its own module, one code path each,
and the httpx2 one is generated from the httpx one by renaming (the way
httpcore generates its sync code from its async code): the package and
its private submodules, ``sw_httpx`` in examples, httpcore in comments.
References to upstream issues (``encode/httpx#1122``) and to other
projects (``httpx-retries``) are kept.

Run ``python -m seawall.interceptors._httpx2_gen`` from a checkout after
changing ``httpx.py`` or ``_httpx_policy.py``; ``--check`` compares
instead of writing and exits 1 when the committed twin is stale (a test
runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = {"httpx.py": "httpx2.py", "_httpx_policy.py": "_httpx2_policy.py"}

_HEADER = ("# Generated from interceptors/{source} by `python -m seawall.interceptors._httpx2_gen`:"
           " do not edit.\n")
# a package name, unless it is part of an issue reference (encode/httpx#1122) or of
# another project's name (httpx-retries, will-ockmore/httpx-retries)
_PACKAGE = re.compile(r"(?<![\w/-])(httpx|httpcore)(?![\w#-])")
_PRIVATE = re.compile(r"\b_httpx_policy\b")
_EXAMPLE = re.compile(r"\bsw_httpx\b")


def twin(source: str, name: str) -> str:
    """The httpx2 text of the module ``name`` whose httpx text is ``source``."""
    text = _PRIVATE.sub("_httpx2_policy", source)
    text = _EXAMPLE.sub("sw_httpx2", text)
    text = _PACKAGE.sub(lambda m: m.group(1) + "2", text)
    return _HEADER.format(source=name) + text


def expected() -> dict[str, str]:
    """``{twin file name: its text}`` from the current httpx sources."""
    return {out: twin((HERE / src).read_text(encoding="utf-8"), src)
            for src, out in SOURCES.items()}


def check() -> list[str]:
    """The twin files whose committed text differs from what this generator writes."""
    stale = []
    for out, text in expected().items():
        path = HERE / out
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(out)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    if args.check:
        stale = check()
        for out in stale:
            print(f"interceptors/{out} is stale: run python -m seawall.interceptors._httpx2_gen",
                  file=sys.stderr)
        return 1 if stale else 0
    for out, text in expected().items():
        (HERE / out).write_text(text, encoding="utf-8")
        print(f"wrote interceptors/{out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
