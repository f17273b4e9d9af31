"""Regenerate the gRPC code of the metrics service from ``protos/``.

Run ``python -m seawall._protos`` (``make protos``) from a checkout. The
generated modules land in ``storage/_gen/`` (package
``seawall.storage._gen``); their imports are rewritten to be relative so
nothing is installed under a top-level ``seawall.metrics`` name.
``--check`` compares instead of writing and exits 1 when the committed
code is stale.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTOS = ("seawall/metrics/v1/metrics.proto",)
OUT = ROOT / "storage" / "_gen"

_HEADER = '"""Generated from protos/ by `python -m seawall._protos`: do not edit."""\n'
# "from seawall.metrics.v1 import metrics_pb2 as x" -> "from . import metrics_pb2 as x"
_ABSOLUTE = re.compile(r"^from seawall\.metrics\.v1 import (\w+)", re.MULTILINE)
_ABSOLUTE_STUB = re.compile(r"^import seawall\.metrics\.v1\.(\w+)$", re.MULTILINE)


def _plugin(name: str) -> str:
    """A protoc plugin installed next to this interpreter (mypy-protobuf)."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"seawall._protos: {name} not found (pip install mypy-protobuf)")
    return found


def generate(out: Path) -> list[Path]:
    """Run protoc into ``out`` and return the files written (flat, imports fixed)."""
    from importlib.resources import files

    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        include = str(files("grpc_tools") / "_proto")
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
            f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
            f"--mypy_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            *PROTOS,
        ]
        code = protoc.main(args)
        if code != 0:
            raise SystemExit(f"seawall._protos: protoc failed with exit code {code}")
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "__init__.py"]
        written[0].write_text(_HEADER)
        for proto in PROTOS:
            folder = Path(tmp) / Path(proto).parent
            for source in sorted(folder.iterdir()):
                text = source.read_text()
                text = _ABSOLUTE.sub(r"from . import \1", text)
                text = _ABSOLUTE_STUB.sub(r"from . import \1", text)
                text = text.replace("seawall.metrics.v1.metrics_pb2.", "metrics_pb2.")
                target = out / source.name
                target.write_text(text)
                written.append(target)
    return written


def check() -> list[str]:
    """Names of generated files that differ from a fresh generation (empty: up to date)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        stale = []
        for path in fresh:
            committed = OUT / path.name
            if not committed.exists() or committed.read_text() != path.read_text():
                stale.append(path.name)
        expected = {p.name for p in fresh}
        if OUT.exists():
            stale += sorted(
                p.name for p in OUT.iterdir()
                if p.is_file() and p.name not in expected and p.suffix in (".py", ".pyi")
            )
        return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m seawall._protos", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when storage/_gen is stale")
    args = parser.parse_args(argv)
    if not PROTO_ROOT.is_dir():
        print(f"seawall._protos: no protos/ folder at {PROTO_ROOT} (run from a checkout)",
              file=sys.stderr)
        return 2
    if args.check:
        stale = check()
        if stale:
            print("seawall._protos: stale generated code: " + ", ".join(stale)
                  + "; run `make protos`", file=sys.stderr)
            return 1
        print("seawall._protos: generated code is up to date")
        return 0
    for path in generate(OUT):
        print(os.path.relpath(path, ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
