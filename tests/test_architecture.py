"""The architecture's rules, checked on the source (parsed with ``ast``, nothing imported).

* no import cycle between modules;
* imports go one way: a module imports nothing from a higher layer of :data:`LAYERS` (imports inside functions
  and under ``TYPE_CHECKING`` count too);
* no source file over :data:`MAX_LINES` lines;
* ``--device`` is declared once (``refit_gym.options.add_device_argument``), so it means the same in every script.

ARCHITECTURE.md describes the layers.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("refit_gym", "agents", "scripts")
MAX_LINES = 500
#: files exempt from the line limit and the one-``--device`` rule (none)
LINE_LIMIT_EXCLUDED: set = set()
DEVICE_OPTION_EXCLUDED: set = set()

#: lowest first. A module belongs to the layer of its longest matching entry (an entry names a module or a package,
#: whose submodules it covers; ``refit_gym`` alone is the package's ``__init__``, which registers the environments).
LAYERS: List[tuple] = [
    ("common", ["refit_gym.utils", "refit_gym.io_safety", "refit_gym.registry", "refit_gym.options",
                "refit_gym.distributed", "refit_gym.scores"]),
    ("data", ["refit_gym.data"]),
    ("metrics", ["refit_gym.metrics", "refit_gym.baselines"]),
    ("diffusion", ["refit_gym.diffusion", "refit_gym.seq_baselines"]),
    ("rewards", ["refit_gym.rewards"]),
    ("scenarios", ["refit_gym.scenarios"]),
    ("envs", ["refit_gym.envs", "refit_gym"]),
    ("agents", ["agents"]),
    ("experiments", ["refit_gym.experiments", "refit_gym.plots", "refit_gym.run_settings"]),
    ("scripts", ["scripts", "refit_gym.cli", "refit_gym.__main__"]),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files() -> Dict[str, Path]:
    """module name -> file, for every .py under :data:`PACKAGES`."""
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


MODULES = source_files()


def imported_modules(name: str, path: Path) -> Set[str]:
    """The project modules ``name`` imports anywhere in its file (the deepest module each import names)."""
    found: Set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import refit_gym.envs.factory.x` -> the module part
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def layer_of(module: str) -> Optional[int]:
    best, best_len = None, -1
    for rank, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            covers = module == entry or (entry != "refit_gym" and module.startswith(entry + "."))
            if covers and len(entry) > best_len:
                best, best_len = rank, len(entry)
    return best


def test_every_module_has_a_layer():
    missing = sorted(m for m in MODULES if layer_of(m) is None)
    assert not missing, f"modules in no layer of tests/test_architecture.py LAYERS (add them where they belong): {missing}"


def test_imports_go_one_way():
    bad = []
    for module, targets in sorted(GRAPH.items()):
        for target in sorted(targets):
            lo, hi = layer_of(module), layer_of(target)
            if lo is not None and hi is not None and hi > lo:
                bad.append(f"{MODULES[module].relative_to(REPO)} ({LAYERS[lo][0]}) imports {target} ({LAYERS[hi][0]})")
    assert not bad, "imports from a higher layer:\n" + "\n".join(bad)


def strongly_connected(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Tarjan's strongly connected components with more than one module (each one holds an import cycle)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []

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
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    cycles = strongly_connected(GRAPH)
    assert not cycles, "modules that import each other (directly or through others): " + "; ".join(map(str, cycles))


def test_strongly_connected_finds_a_cycle():
    """The cycle check itself: a -> b -> c -> a is found, a tree is not."""
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


@pytest.mark.parametrize("rel", sorted(str(p.relative_to(REPO)) for p in MODULES.values()))
def test_file_length(rel):
    if rel in LINE_LIMIT_EXCLUDED:
        pytest.skip("being split on another branch (see LINE_LIMIT_EXCLUDED)")
    n = len((REPO / rel).read_text().splitlines())
    assert n <= MAX_LINES, f"{rel} has {n} lines (limit {MAX_LINES}): split it by concern"


def test_device_option_is_declared_once():
    """Every script takes ``--device`` from ``refit_gym.options.add_device_argument`` (default auto, one help text)."""
    declared = []
    for module, path in MODULES.items():
        rel = str(path.relative_to(REPO))
        if rel in DEVICE_OPTION_EXCLUDED or module == "refit_gym.options":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
                    and any(isinstance(a, ast.Constant) and a.value == "--device" for a in node.args)):
                declared.append(f"{rel}:{node.lineno}")
    assert not declared, f"--device declared outside refit_gym.options.add_device_argument: {declared}"
