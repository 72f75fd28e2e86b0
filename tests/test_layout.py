"""The shape of the code: imports go one way, transforms/ stays pure, and the clocks and
process knobs each have one home.

Every import statement counts, also one inside a function: a lazy import that closed a
cycle would only hide it. Imports under `if TYPE_CHECKING:` are left out: they never run.
The graph is read from the source (ast), not from what happens to be imported at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.events import REPO

PACKAGES = ("consumer", "transforms", "sql", "devstack")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """Project modules `name` imports anywhere in its source (resolved to modules)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    type_only = {id(n) for block in ast.walk(tree) if _is_type_checking_block(block)
                 for n in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # each name is a submodule or a name defined in `base` (resolved in import_graph)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(name, path):
            # `from a.b import c` names module a.b.c when it exists, else a.b
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


# A stage may import what is listed for it (and itself); storage is shared by the stages.
ALLOWED = {
    "transforms": {"transforms"},
    "sql": set(),
    "consumer.errors": set(),
    "consumer.clock": set(),
    "consumer.tuning": set(),
    "consumer.config": {"consumer.config_file", "consumer.errors", "transforms"},
    # the file and env read without the settings models, for `query` and `views`
    "consumer.config_file": {"consumer.errors"},
    "consumer.storage": {"consumer.storage", "consumer.clock", "consumer.errors", "transforms", "sql"},
    "consumer.eventhub": {"consumer.eventhub", "consumer.config", "consumer.errors",
                          "consumer.backfill.blocks"},  # publish reads input files as backfill does
    "consumer.backfill": {"consumer.backfill", "consumer.storage", "consumer.clock", "consumer.errors",
                          "consumer.tuning", "transforms"},
    "consumer.query": {"consumer.query", "consumer.storage", "consumer.errors"},
    # compaction folds the view state through the same views a reader opens
    "consumer.maintenance": {"consumer.maintenance", "consumer.query", "consumer.storage",
                             "consumer.errors"},
    # the report queries the views through a read-only query connection
    "consumer.report": {"consumer.report", "consumer.query", "consumer.errors"},
    "consumer.live": {"consumer.live", "consumer.storage", "consumer.eventhub", "consumer.clock",
                      "consumer.config", "consumer.errors", "consumer.tuning", "transforms"},
    "consumer.cli": {"consumer", "transforms"},
    "consumer.commands": {"consumer", "transforms"},
    "consumer.__main__": {"consumer.cli"},
    "consumer": set(),
    "devstack": {"devstack"},
}


def _rule_for(module: str) -> str:
    return max((prefix for prefix in ALLOWED if module == prefix or module.startswith(prefix + ".")), key=len)


def _allowed(target: str, allowed: set[str]) -> bool:
    return any(target == a or target.startswith(a + ".") for a in allowed)


def test_imports_go_one_way():
    wrong = [f"{module} imports {target}"
             for module, targets in sorted(import_graph().items())
             for target in sorted(targets)
             if not _allowed(target, ALLOWED[_rule_for(module)])]
    assert wrong == []


def _source(package: str) -> list[tuple[str, str]]:
    return [(str(p.relative_to(REPO)), p.read_text()) for p in sorted((REPO / package).rglob("*.py"))]


@pytest.mark.parametrize("forbidden", ["import time", "import os", "import socket", "import asyncio",
                                       "import random", "import threading", "from pathlib",
                                       "datetime.now", "open("])
def test_transforms_do_no_io_and_read_no_clock(forbidden):
    assert [path for path, text in _source("transforms") if forbidden in text] == []


@pytest.mark.parametrize("call", ["time.time(", "time.monotonic(", "time.time_ns(", "time.monotonic_ns(",
                                  "time.perf_counter(", "datetime.now(", "datetime.utcnow("])
def test_every_clock_read_of_consumer_is_in_clock_py(call):
    assert [path for path, text in _source("consumer")
            if call in text and path != "consumer/clock.py"] == []


@pytest.mark.parametrize("knob", ["gc.freeze(", "gc.set_threshold(", "gc.disable(", "mallopt",
                                  "malloc_trim", "set_memory_pool(", "os.environ"])
def test_every_process_knob_is_in_tuning_py(knob):
    assert [path for path, text in _source("consumer")
            if knob in text and path != "consumer/tuning.py"] == []
