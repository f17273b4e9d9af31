"""Write each sync module from its async twin: the core's shell, and the httpx transport.

Some logic has two ways of waiting (``await`` or block the thread), so it
is written once, in an async module, and this script derives the sync one
(as httpcore's ``unasync`` does). :data:`PAIRS` lists them:
``sdk/_async_shell.py`` -> ``sdk/_sync_shell.py`` and
``interceptors/_httpx_async.py`` -> ``interceptors/_httpx_sync.py``. The
rules, applied line by line:

* a statement whose line ends with ``# async only`` is dropped, with the
  block it opens (the lines indented deeper that follow it);
* a line ending with ``# sync: <code>`` becomes ``<code>``, at its indentation;
  a comment line ``# sync: <code>`` alone is a line only the sync module has;
* ``async def`` becomes ``def``, ``async for`` / ``async with`` lose their
  ``async``, ``await`` goes, ``Awaitable[X]`` becomes ``X``;
* the async names get their sync twins, whole words only (the pair's
  ``renames``); a few passages of prose (docstrings cannot carry markers)
  get the pair's sync text, each passage found exactly once or the
  generator fails;
* the module docstring is replaced by the pair's ``doc``.

Run ``python sdk/_unasync.py`` after changing an async source (a plain
script: it imports nothing of seawall, so it runs even while a generated
module is broken); it rewrites only the targets that changed. ``--check``
compares instead of writing and exits 1 when a committed target is stale
(``make lint`` and tests run it). After it, regenerate the httpx2 twins:
``python -m seawall.interceptors._httpx2_gen``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the integrations' folder (sdk/interceptors links to it), fixed when this module loads
INTERCEPTORS = HERE / "interceptors"


@dataclass(frozen=True)
class Pair:
    """One generated module: ``target`` written from ``source``, both in ``folder``.

    ``folder`` is ``"sdk"`` (:data:`HERE`) or ``"interceptors"``
    (:data:`INTERCEPTORS`). ``renames`` maps async names to sync names;
    ``passages`` maps exact async text to its sync text.
    """

    folder: str
    source: str
    target: str
    doc: str
    renames: dict[str, str]
    passages: tuple[tuple[str, str], ...] = field(default=())

    @property
    def header(self) -> str:
        """The first line of the target."""
        return (f"# Generated from {self.folder}/{self.source} by `python sdk/_unasync.py`:"
                " do not edit.\n")

    def path(self, name: str) -> Path:
        """Where ``name`` (the source or the target) lives."""
        return (HERE if self.folder == "sdk" else INTERCEPTORS) / name


class GenerationError(Exception):
    """A pair's table no longer fits its source (a passage is missing or repeated)."""


# -- the core's shells ---------------------------------------------------------------------

SOURCE, TARGET = "_async_shell.py", "_sync_shell.py"

SYNC_DOC = '''"""The sync shell: ``IntegrationPoint.run``, waiting in the calling thread.

Generated from ``_async_shell.py``, where the logic is written once for
both shells and each difference is marked: read and change that file,
then run ``python sdk/_unasync.py``. This shell waits with the
point's clock (backoff) and blocks the thread for a bulkhead permit; it
cannot interrupt an attempt, so it counts one that succeeds after its
deadline as an overrun (a success, a ``timeout`` and a slow call).
"""
'''

# async name -> sync name, whole words only
RENAMES = {
    "arun": "run",
    "asleep": "sleep",
    "acquire_async": "acquire",
    "aanswer": "answer",
    "afinish_failure": "finish_failure",
    "afinish_rejection": "finish_rejection",
}

SHELL = Pair("sdk", SOURCE, TARGET, SYNC_DOC, RENAMES)

# -- the httpx transport -------------------------------------------------------------------

HTTPX_DOC = '''"""The sync httpx transport, :class:`ResilientTransport`: generated, do not edit.

Generated from ``_httpx_async.py`` by ``python sdk/_unasync.py``: the
transport is written once, in the async module, and this one is derived
from it (``await`` dropped, the async names given their sync twins, the
lines marked for the sync side swapped in). Read and change the async
module, then regenerate. What differs: this transport blocks the calling
thread, and it cannot interrupt an attempt, so a response that arrives
after the attempt's deadline is returned and counted as an overrun.
"""
'''

HTTPX_RENAMES = {
    "AsyncResilientTransport": "ResilientTransport",
    "AsyncBaseTransport": "BaseTransport",
    "AsyncHTTPTransport": "HTTPTransport",
    "AsyncByteStream": "SyncByteStream",
    "AsyncClient": "Client",
    "AsyncIterator": "Iterator",
    "handle_async_request": "handle_request",
    "__aiter__": "__iter__",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "aclose": "close",
    "aread": "read",
    "arun": "run",
    "_Async": "_Sync",
    "_AsyncCall": "_SyncCall",
    "_AsyncPrefixedStream": "_PrefixedStream",
    "_aread_body": "_read_body",
    "_aread_within": "_read_within",
    "_adiscard": "_discard",
    "_arun_watched": "_run_watched",
}

HTTPX_PASSAGES = (
    ("An async httpx transport that sends each request through an integration point.",
     "A sync httpx transport that sends each request through an integration point."),
    ("""    Runs under asyncio and under trio, like httpx's async client: the
    retry waits and the bulkhead queue use the library of the calling task.
    Attempt timeouts are handed to httpx as timeouts, never enforced by
    cancelling the request: cancelling httpcore under pool contention can
    leak connections (encode/httpcore#830). Cancelling the caller's task
    cancels the request and never counts as a failure. Safe to share
    between tasks of one event loop.""",
     """    Attempt timeouts are handed to httpx as timeouts (no phase longer than
    the attempt); a thread cannot be interrupted, so a response that comes
    after the attempt's deadline is returned and counted as an overrun.
    Thread-safe."""),
)

HTTPX = Pair("interceptors", "_httpx_async.py", "_httpx_sync.py", HTTPX_DOC, HTTPX_RENAMES,
             HTTPX_PASSAGES)

PAIRS = (SHELL, HTTPX)
"""Every (async source, sync target) this script writes, in order."""

HEADER = SHELL.header

# -- the rules -----------------------------------------------------------------------------

_ASYNC_ONLY = re.compile(r"\s*# async only$")
_SYNC_LINE = re.compile(r"^(?P<indent>\s*)(?:\S.*?\s*)?# sync: (?P<code>.+)$")
_DOCSTRING = re.compile(r'\A"""(?:.|\n)*?"""\n')
_AWAITABLE = re.compile(r"\bAwaitable\[([\w.]+)\]")
_ASYNC_KEYWORD = re.compile(r"\basync (def|for|with) ")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block_end(lines: list[str], i: int, depth: int) -> int:
    """The index after the block that starts at ``lines[i]`` under a line indented ``depth``."""
    while True:
        j = i
        while j < len(lines) and not lines[j].strip():
            j += 1  # blank lines belong to the block only if it goes on after them
        if j == len(lines) or _indent(lines[j]) <= depth:
            return i
        i = j + 1


def _passages(text: str, pair: Pair) -> str:
    for old, new in pair.passages:
        found = text.count(old)
        if found != 1:
            raise GenerationError(
                f"{pair.folder}/{pair.source}: a passage of the generator's table occurs "
                f"{found} times (expected once), update sdk/_unasync.py: {old[:60]!r}..."
            )
        text = text.replace(old, new)
    return text


def unasync(source: str, pair: Pair = SHELL) -> str:
    """The sync module's text for ``pair``'s async ``source`` (by default the shell's)."""
    body = _DOCSTRING.sub(pair.doc.replace("\\", "\\\\"), source, count=1)
    body = _passages(body, pair)
    rename = re.compile(r"\b(" + "|".join(map(re.escape, pair.renames)) + r")\b")
    out: list[str] = []
    lines = body.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if _ASYNC_ONLY.search(line):
            if line.rstrip().removesuffix("# async only").rstrip().endswith(":"):
                i = _block_end(lines, i, _indent(line))  # drop the block too
            continue
        found = _SYNC_LINE.match(line)
        if found is not None:
            line = found["indent"] + found["code"]
        line = _ASYNC_KEYWORD.sub(r"\1 ", line).replace("await ", "")
        line = _AWAITABLE.sub(r"\1", line)
        out.append(rename.sub(lambda m: pair.renames[m.group(1)], line))
    # what was dropped may leave more blank lines than PEP 8 allows in a row
    text = re.sub(r"\n{4,}", "\n\n\n", "\n".join(out))
    return pair.header + text.rstrip("\n") + "\n"


def expected(pair: Pair = SHELL) -> str:
    """``pair``'s target as its current source gives it."""
    return unasync(pair.path(pair.source).read_text(encoding="utf-8"), pair)


def is_current(pair: Pair) -> bool:
    """True when ``pair``'s committed target is what :func:`expected` writes."""
    path = pair.path(pair.target)
    return path.exists() and path.read_text(encoding="utf-8") == expected(pair)


def stale() -> list[Pair]:
    """The pairs whose committed target is stale."""
    return [pair for pair in PAIRS if not is_current(pair)]


def check() -> bool:
    """True when every committed target is current."""
    return not stale()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    try:
        if args.check:
            late = stale()
            for pair in late:
                print(f"{pair.folder}/{pair.target} is stale: run python sdk/_unasync.py",
                      file=sys.stderr)
            return 1 if late else 0
        for pair in PAIRS:
            if not is_current(pair):
                pair.path(pair.target).write_text(expected(pair), encoding="utf-8")
                print(f"wrote {pair.folder}/{pair.target}")
    except GenerationError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
