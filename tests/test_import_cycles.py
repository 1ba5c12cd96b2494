"""gs_vq's modules import each other without cycles, counting imports made inside functions.

Every ``import`` / ``from ... import`` anywhere in a module's AST (top level, in functions, under
``if``/``try``) is an edge to the gs_vq module it names (``from .pkg import name`` is an edge to
``pkg.name`` when that is a module, else to ``pkg``). A package's ``__init__`` re-exporting its own
submodules is not a cycle; any other strongly connected set of modules is, and so is a pair of
packages that import each other (``gs_vq.cli`` <-> ``gs_vq.semantics``).
"""

import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[1] / "gs_vq"


def module_names() -> Dict[str, Path]:
    """``{dotted module name: file}`` for every .py file of gs_vq (``pkg`` for ``pkg/__init__.py``)."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ["gs_vq", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: Set[str]) -> Set[str]:
    """The gs_vq modules that module ``name`` imports anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `import gs_vq.io.ply` names gs_vq.io.ply; an attribute names its module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def graph() -> Dict[str, Set[str]]:
    files = module_names()
    edges = {n: imports_of(n, p, set(files)) for n, p in files.items()}
    for n in edges:  # a package's __init__ importing its own submodules is how packages export
        edges[n] = {t for t in edges[n] if not (files[n].name == "__init__.py" and t.startswith(n + "."))}
    return edges


def cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def package_of(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else name


def two_way_packages(edges: Dict[str, Set[str]]) -> List[tuple]:
    """Pairs of gs_vq's subpackages that import each other, through any of their modules."""
    pkg = {}
    for a, targets in edges.items():
        for b in targets:
            pa, pb = package_of(a), package_of(b)
            if pa != pb and a.count(".") >= 2 and b.count(".") >= 2:
                pkg.setdefault(pa, set()).add(pb)
    return sorted({tuple(sorted((a, b))) for a in pkg for b in pkg[a] if a in pkg.get(b, ())})


def test_the_walk_sees_function_level_imports(tmp_path):
    pkg = tmp_path / "gs_vq"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from . import x\n")
    (pkg / "a" / "x.py").write_text("def f():\n    from .y import g\n")
    (pkg / "a" / "y.py").write_text("from gs_vq.a import x\n")
    global ROOT
    root, ROOT = ROOT, pkg
    try:
        edges = graph()
    finally:
        ROOT = root
    assert edges["gs_vq.a.x"] == {"gs_vq.a.y"} and edges["gs_vq.a.y"] == {"gs_vq.a.x"}
    assert cycles(edges) == [["gs_vq.a.x", "gs_vq.a.y"]]


def test_no_import_cycles():
    edges = graph()
    assert len(edges) > 50 and any(edges.values())
    assert cycles(edges) == []
    assert two_way_packages(edges) == []


def test_the_file_format_does_not_import_the_codebook_library():
    """gs_vq.io (the file format) and gs_vq.quant (the quantizers) share only gs_vq.bits."""
    edges = graph()
    uses = {(a, b) for a, targets in edges.items() if package_of(a) == "gs_vq.io"
            for b in targets if package_of(b) == "gs_vq.quant"}
    assert uses == set()
    assert "gs_vq.bits" in edges["gs_vq.io.streams"] and "gs_vq.bits" in edges["gs_vq.quant.base"]
