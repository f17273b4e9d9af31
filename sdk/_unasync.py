"""Write the sync shell (``_sync_shell.py``) from the async one (``_async_shell.py``).

The two shells are one logic with two ways of waiting, so the logic is
written once, in the async shell, and this script derives the sync one
(as httpcore's ``unasync`` does). Its rules, applied line by line:

* a statement whose line ends with ``# async only`` is dropped, with the
  block it opens (the lines indented deeper that follow it);
* a line ending with ``# sync: <code>`` becomes ``<code>``, at its indentation;
* ``async def`` becomes ``def``, ``await`` goes, ``Awaitable[T]`` becomes
  ``T``, and the async twins get their sync names (:data:`RENAMES`);
* the module docstring is replaced by :data:`SYNC_DOC`.

Run ``python sdk/_unasync.py`` after changing ``_async_shell.py`` (a plain
script: it imports nothing of seawall, so it runs even while the sync
shell is broken); ``--check`` compares instead of writing and exits 1
when the committed sync shell is stale (``make lint`` and a test run it).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE, TARGET = "_async_shell.py", "_sync_shell.py"

HEADER = f"# Generated from sdk/{SOURCE} by `python sdk/_unasync.py`: do not edit.\n"
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
_RENAME = re.compile(r"\b(" + "|".join(RENAMES) + r")\b")
_ASYNC_ONLY = re.compile(r"\s*# async only$")
_SYNC_LINE = re.compile(r"^(?P<indent>\s*)\S.*?\s*# sync: (?P<code>.+)$")
_DOCSTRING = re.compile(r'\A"""(?:.|\n)*?"""\n')


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


def unasync(source: str) -> str:
    """The sync shell's text for the async shell's ``source``."""
    body = _DOCSTRING.sub(SYNC_DOC.replace("\\", "\\\\"), source, count=1)
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
        line = line.replace("async def ", "def ").replace("await ", "")
        line = line.replace("Awaitable[T]", "T")
        out.append(_RENAME.sub(lambda m: RENAMES[m.group(1)], line))
    # what was dropped may leave more blank lines than PEP 8 allows in a row
    text = re.sub(r"\n{4,}", "\n\n\n", "\n".join(out))
    return HEADER + text.rstrip("\n") + "\n"


def expected() -> str:
    """The sync shell as the current async shell gives it."""
    return unasync((HERE / SOURCE).read_text(encoding="utf-8"))


def check() -> bool:
    """True when the committed sync shell is what :func:`expected` writes."""
    path = HERE / TARGET
    return path.exists() and path.read_text(encoding="utf-8") == expected()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    if args.check:
        if check():
            return 0
        print(f"sdk/{TARGET} is stale: run python sdk/_unasync.py", file=sys.stderr)
        return 1
    (HERE / TARGET).write_text(expected(), encoding="utf-8")
    print(f"wrote sdk/{TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
