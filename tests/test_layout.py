"""The code base's layout rules, checked on its source (parsed, never imported here):

- method knowledge stays in `peftbench/methods/`: no other module compares something to a
  registered method's name or keeps a table keyed by method names (a method that needs special
  treatment says so through a hook on `Method`);
- no import cycle among peftbench's modules;
- no module over MAX_MODULE_LINES lines, no function over MAX_FUNCTION_LINES lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import peftbench

PACKAGE_DIR = Path(peftbench.__file__).parent
METHODS_DIR = PACKAGE_DIR / "methods"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    """{dotted module name: file} for every module of the package."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _registered_method_names() -> set[str]:
    """The `name=` of every `METHOD = Method(...)` in methods/ (the registry, read from source)."""
    names = set()
    for path in METHODS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Method":
                for keyword in node.keywords:
                    if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                        names.add(keyword.value.value)
    return names


def _strings(node: ast.AST) -> list[str]:
    """The string constants of a set, list, tuple or dict-keys literal."""
    if isinstance(node, ast.Dict):
        elements = node.keys
    elif isinstance(node, ast.Set | ast.List | ast.Tuple):
        elements = node.elts
    else:
        return []
    return [e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def _is_method_table(node: ast.AST, names: set[str]) -> bool:
    """A literal whose strings are mostly method names, with at least two of them: a per-method
    set or table ({"prompt_tuning", "ptuning"}), not a list that happens to hold "full"."""
    strings = _strings(node)
    hits = [s for s in strings if s in names]
    return len(hits) >= 2 and 2 * len(hits) > len(strings)


def _method_leaks(tree: ast.Module, names: set[str]) -> list[str]:
    """Comparisons of a method to a method name, and per-method tables, in one module."""
    module_tables = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign) and _is_method_table(node.value, names)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    leaks = []
    for node in ast.walk(tree):
        if _is_method_table(node, names):
            leaks.append(f"line {node.lineno}: per-method literal {ast.unparse(node)[:60]}")
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        about_a_method = any("method" in ast.unparse(o).lower() for o in operands)
        names_a_method = any(
            (isinstance(o, ast.Constant) and o.value in names)
            or any(s in names for s in _strings(o))
            or (isinstance(o, ast.Name) and o.id in module_tables)
            for o in operands
        )
        if about_a_method and names_a_method:
            leaks.append(f"line {node.lineno}: {ast.unparse(node)}")
    return leaks


def test_the_leak_check_finds_what_it_looks_for() -> None:
    names = {"full", "lora", "prompt_tuning", "ptuning"}
    leaking = ast.parse(
        'PROMPT = {"prompt_tuning", "ptuning"}\n'
        'a = row["method"] == "full"\n'
        "b = spec.method in PROMPT\n"
        'c = method.name in ("lora", "x")\n'
    )
    assert len(_method_leaks(leaking, names)) == 4  # the set itself and three comparisons
    clean = ast.parse(
        'FACTORIES = {"zeros_like", "empty_like", "full", "ones"}\n'
        'a = params.base == "full"\n'
        "b = op in FACTORIES\n"
        "c = method.saves_whole_model\n"
    )
    assert _method_leaks(clean, names) == []


def test_no_module_outside_methods_names_a_method() -> None:
    names = _registered_method_names()
    assert {"full", "lora", "qlora", "prefix_tuning"} <= names  # the registry was read
    leaks = {
        module: found
        for module, path in _modules().items()
        if METHODS_DIR not in path.parents
        and (found := _method_leaks(ast.parse(path.read_text()), names))
    }
    assert not leaks, f"method knowledge outside methods/ (add a Method hook instead): {leaks}"


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The peftbench modules `module` imports (anywhere but under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1]])
                base = f"{base}.{node.module}" if node.module else base
            # `from peftbench.x import y` imports the module peftbench.x.y when there is one.
            found |= {
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            }
    return {name for name in found if name in known and name != module}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert graph["peftbench.train"], "the import graph is empty: the parser found no imports"
    assert not _cycles(graph), f"import cycles: {_cycles(graph)}"


def test_no_module_or_function_is_too_long() -> None:
    too_long = []
    for module, path in _modules().items():
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            too_long.append(f"module {module}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{module}.{node.name}: {length} lines")
    assert not too_long, f"split these by concept: {too_long}"
