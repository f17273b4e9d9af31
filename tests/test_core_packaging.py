"""The extras give what the docs' examples import: ``pip install '.[asyncio]'`` runs the async one."""

from __future__ import annotations

import re
import sys
from importlib import metadata

import pytest

from tests.docs_support import ROOT, Page

README_PAGE = Page("README.md")
README = README_PAGE.text
SNIPPETS = README_PAGE.blocks
# a SQLAlchemy URL's driver -> the module it imports
DRIVERS = {"aiosqlite": "aiosqlite", "asyncpg": "asyncpg", "psycopg_async": "psycopg",
           "psycopg": "psycopg", "psycopg2": "psycopg2", "pymysql": "pymysql"}


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement string."""
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert found is not None, requirement
    return re.sub(r"[-_.]+", "-", found.group(0)).lower()


def _project() -> dict[str, object]:
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is Python 3.11+")  # the suite runs on 3.11 (CI)
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]  # type: ignore[no-any-return]


def _needs(snippet: str) -> set[str]:
    """The distributions a snippet imports, its SQLAlchemy URLs' drivers included."""
    modules = set(re.findall(r"^\s*(?:from|import)\s+([A-Za-z_][A-Za-z0-9_]*)", snippet, re.M))
    modules |= {DRIVERS[d] for d in re.findall(r"[a-z]+\+([a-z0-9_]+)://", snippet)
                if d in DRIVERS}
    distributions = metadata.packages_distributions()
    needed = set()
    for module in modules:
        if module in sys.stdlib_module_names or module == "seawall":
            continue
        assert module in distributions, f"{module} is imported by a README example, not installed"
        needed |= {_name(d) for d in distributions[module]}
    return needed


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_each_readme_example_is_covered_by_the_dependencies_and_extras(index: int) -> None:
    """Every distribution a README example needs is a dependency or in the extra it names."""
    project = _project()
    base = {_name(r) for r in project["dependencies"]}  # type: ignore[attr-defined]
    extras = {name: {_name(r) for r in reqs}
              for name, reqs in project["optional-dependencies"].items()}  # type: ignore[attr-defined]
    snippet = SNIPPETS[index]
    needed = _needs(snippet)
    offered = set(base)
    if "sqlalchemy.ext.asyncio" in snippet:  # the README: pip install '.[asyncio]'
        offered |= extras["asyncio"]
    if "postgresql" in snippet:  # the README: pip install '.[postgresql]'
        offered |= extras["postgresql"]
    if "prometheus_client" in snippet:  # the README: pip install '.[prometheus]'
        offered |= extras["prometheus"]
    assert needed <= offered, f"README example {index} needs {sorted(needed - offered)}"


def test_the_install_section_names_what_each_extra_brings() -> None:
    """The README's install lines say what ``asyncio`` and ``postgresql`` add."""
    assert "pip install '.[asyncio]'" in README and "aiosqlite" in README.split(
        "pip install '.[asyncio]'", 1)[1].splitlines()[0]
    assert "pip install '.[postgresql]'" in README
