"""The package's architecture, checked from its source: layers, import circles, private state.

The folders are layers (docs/architecture.md). Each module imports only from its own layer or the
layers below, no two modules import each other (directly or round a circle), and no object reads
or writes another object's private attributes: a class's ``_name`` is used through ``self``/``cls``
only. The import graph is read with ``ast`` from every ``import`` statement, those inside functions
included, so a lazy import counts like any other.
"""
from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "chronicle_async"

#: Lowest first. A module may import its own layer and any layer before it.
LAYERS = (
    ("hot",),
    ("_errors", "_public"),
    ("queue",),
    ("loop",),
    ("control",),
    ("frames", "bridge"),
    ("cli", "bench"),
    ("__init__",),
)

#: Reads of another object's ``_name`` that are not ours to rename: numba's array model.
FOREIGN_PRIVATE = {("hot/atomics.py", "_getvalue")}

#: The source table's position fields: only the cursor (and the kernels) may know them.
POSITION_FIELDS = {"SRC_SEG_ADDR", "SRC_SEG_SIZE", "SRC_SEG_ID", "SRC_OFFSET", "SRC_NEXT_SEQ", "SRC_CTL_ADDR",
                   "SRC_POS_ADDR", "SRC_POS_GEN", "SRC_EPOCH", "SRC_CAN_PARK", "SRC_VERIFY"}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _layer(module: str) -> int:
    top = module.split(".")[0]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"chronicle_async.{module} is in no layer: add its folder to LAYERS")


def _imports(module: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """The package modules ``module`` imports (relative and absolute, at any depth)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("chronicle_async"):
                target = node.module[len("chronicle_async."):] if node.module != "chronicle_async" else ""
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                targets.append(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            targets = [a.name[len("chronicle_async."):] for a in node.names if a.name.startswith("chronicle_async.")]
        out.update(t for t in targets if t in known and t != module)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {m: _imports(m, p, known) for m, p in mods.items()}


def test_every_module_imports_only_its_own_layer_or_the_layers_below():
    upward = [f"{m} -> {t}" for m, targets in _graph().items() for t in targets
              if m != "__init__" and _layer(t) > _layer(m)]
    assert not upward, upward


def test_no_import_circle_in_the_package():
    graph = _graph()
    graph.pop("__init__", None)  # the face imports everything and nothing imports it
    for targets in graph.values():
        targets.discard("__init__")
    # Tarjan's strongly connected components: any with more than one module is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                circles.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    assert not circles, circles


def _private_accesses() -> list[str]:
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules.update((a.asname or a.name).split(".")[0] for a in node.names)
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and (owner.id in ("self", "cls") or owner.id in modules):
                continue  # one's own state, or a module's private helper
            if (rel, node.attr) in FOREIGN_PRIVATE:
                continue
            hits.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    return hits


def test_no_object_reads_or_writes_another_objects_private_attributes():
    hits = _private_accesses()
    assert not hits, "\n".join(hits)


def test_only_the_cursor_maps_a_reader_position_to_a_source_table_row():
    users = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("hot/"):
            continue  # the kernels and the table's definition
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in POSITION_FIELDS:
                users.setdefault(rel, set()).add(node.attr)
    assert set(users) == {"queue/cursor.py"}, users
