"""The SQLAlchemy integration's layout: one concept per module, a public face that only re-exports.

``interceptors/sqlalchemy.py`` defines nothing; each ``_sqlalchemy_*.py``
holds one concept (hooks, connections, statements, transactions, the
timeouts per dialect, the state kept, classification, fault injection) and says so in its
docstring. The behaviour is tested by the other test_sqlalchemy*.py files.
"""

from __future__ import annotations

import ast
from pathlib import Path

from seawall.interceptors import sqlalchemy as sw_sa

HERE = Path(sw_sa.__file__).resolve().parent

PUBLIC = [
    "OPERATION_OPTION",
    "InjectedDisconnect",
    "arun_transaction",
    "classify",
    "injected_disconnect",
    "instrument",
    "run_transaction",
    "uninstrument",
]

MODULES = ["chaos", "classify", "connections", "hooks", "sqlite", "state", "statements", "timeouts",
           "transactions"]


def test_every_sqlalchemy_module_is_one_sitting_and_says_what_it_holds() -> None:
    """Each module is at most 400 lines and opens with a docstring; none is left unlisted."""
    found = sorted(p.stem.removeprefix("_sqlalchemy_") for p in HERE.glob("_sqlalchemy_*.py"))
    assert found == MODULES
    for path in [HERE / "sqlalchemy.py", *(HERE / f"_sqlalchemy_{m}.py" for m in MODULES)]:
        text = path.read_text(encoding="utf-8")
        assert text.count("\n") <= 400, path.name
        assert ast.get_docstring(ast.parse(text)), path.name


def test_the_public_module_only_re_exports_its_names() -> None:
    """sqlalchemy.py holds imports and ``__all__`` only; every public name is there and documented."""
    assert sw_sa.__all__ == PUBLIC
    tree = ast.parse(Path(sw_sa.__file__).read_text(encoding="utf-8"))
    for node in tree.body[1:]:  # after the docstring
        assert isinstance(node, (ast.ImportFrom, ast.Assign)), ast.dump(node)
        if isinstance(node, ast.Assign):
            assert [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__all__"]
    for name in [*PUBLIC, "operation_of"]:
        value = getattr(sw_sa, name)
        assert isinstance(value, str) or value.__doc__, name
