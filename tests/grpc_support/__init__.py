"""The gRPC test service: echo.proto compiled by grpcio-tools at import time, plus servers.

``load_echo()`` compiles ``echo.proto`` into a temporary directory once per
process and returns ``(pb2, pb2_grpc)``; nothing generated is committed, so
the code always matches the installed grpcio-tools.
"""

from __future__ import annotations

import atexit
import importlib
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

_PROTO = Path(__file__).with_name("echo.proto")
_MODULE = "seawall_echo_test"  # a name no other test or package uses
_loaded: tuple[ModuleType, ModuleType] | None = None


def load_echo() -> tuple[ModuleType, ModuleType]:
    """Compile (once) and import the echo service: ``(echo_pb2, echo_pb2_grpc)``."""
    global _loaded
    if _loaded is not None:
        return _loaded
    from grpc_tools import protoc

    out = Path(tempfile.mkdtemp(prefix="seawall-echo-"))
    atexit.register(shutil.rmtree, out, True)
    shutil.copyfile(_PROTO, out / f"{_MODULE}.proto")
    include = Path(protoc.__file__).parent / "_proto"
    status = protoc.main([
        "grpc_tools.protoc", f"-I{out}", f"-I{include}",
        f"--python_out={out}", f"--grpc_python_out={out}", str(out / f"{_MODULE}.proto"),
    ])
    if status != 0:
        raise RuntimeError(f"protoc failed on {_PROTO} (exit {status})")
    sys.path.insert(0, str(out))
    try:
        pb2 = importlib.import_module(f"{_MODULE}_pb2")
        pb2_grpc = importlib.import_module(f"{_MODULE}_pb2_grpc")
    finally:
        sys.path.remove(str(out))
    _loaded = (pb2, pb2_grpc)
    return _loaded
