"""The gRPC test services: protos compiled by grpcio-tools at import time, plus servers.

``load_echo()`` compiles ``echo.proto`` (and ``load_interop()``
``interop.proto``) into a temporary directory once per process and returns
``(pb2, pb2_grpc)``; nothing generated is committed, so the code always
matches the installed grpcio-tools.
"""

from __future__ import annotations

import atexit
import importlib
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

_HERE = Path(__file__).parent
_loaded: dict[str, tuple[ModuleType, ModuleType]] = {}


def _load(stem: str) -> tuple[ModuleType, ModuleType]:
    """Compile (once) ``<stem>.proto`` and import it as ``seawall_<stem>_test``."""
    if stem in _loaded:
        return _loaded[stem]
    from grpc_tools import protoc

    proto = _HERE / f"{stem}.proto"
    module = f"seawall_{stem}_test"  # a name no other test or package uses
    out = Path(tempfile.mkdtemp(prefix=f"seawall-{stem}-"))
    atexit.register(shutil.rmtree, out, True)
    shutil.copyfile(proto, out / f"{module}.proto")
    include = Path(protoc.__file__).parent / "_proto"
    status = protoc.main([
        "grpc_tools.protoc", f"-I{out}", f"-I{include}",
        f"--python_out={out}", f"--grpc_python_out={out}", str(out / f"{module}.proto"),
    ])
    if status != 0:
        raise RuntimeError(f"protoc failed on {proto} (exit {status})")
    sys.path.insert(0, str(out))
    try:
        pb2 = importlib.import_module(f"{module}_pb2")
        pb2_grpc = importlib.import_module(f"{module}_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    _loaded[stem] = (pb2, pb2_grpc)
    return pb2, pb2_grpc


def load_echo() -> tuple[ModuleType, ModuleType]:
    """The echo service the interceptor tests use: ``(echo_pb2, echo_pb2_grpc)``."""
    return _load("echo")


def load_interop() -> tuple[ModuleType, ModuleType]:
    """The interop-shaped ``TestService`` (see ``interop.proto``): ``(pb2, pb2_grpc)``."""
    return _load("interop")
