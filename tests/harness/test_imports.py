"""Imports run one way: no module under src/ imports one that imports it back, directly or through others (imports
inside functions count: they hide a circle, they do not remove it), and nothing under src/ imports from tests/."""

import ast
from pathlib import Path

from src.harness.paths import ROOT


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, module: str) -> set[str]:
    """Every module `path` imports anywhere in it: `from a.b import c` counts as a.b.c when that is a module (the
    caller keeps only the names it knows), else as a.b."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _import_graph() -> dict[str, set[str]]:
    files = {_module_name(path): path for path in sorted((ROOT / "src").rglob("*.py"))}
    return {module: {m for m in _imported(path, module) if m in files and m != module}
            for module, path in files.items()}


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` as [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                return stack[stack.index(imported):] + [imported]
            if imported not in state and (found := visit(imported)):
                return found
        state[module] = "done"
        stack.pop()
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_module_under_src_imports_itself_back():
    circle = _circle(_import_graph())
    assert circle is None, (f"import circle: {' -> '.join(circle)}; move what these modules share into a module "
                            "below them, so that imports run one way (an import inside a function counts too)")


def test_nothing_under_src_imports_the_tests():
    offenders = [f"{_module_name(path)} imports {name}" for path in sorted((ROOT / "src").rglob("*.py"))
                 for name in sorted(_imported(path, _module_name(path))) if name.split(".")[0] == "tests"]
    assert not offenders, f"src/ must not depend on tests/: {'; '.join(offenders)}"


def test_the_check_sees_imports_inside_functions_and_finds_circles(tmp_path):
    source = tmp_path / "b.py"
    source.write_text("def f():\n    from src.harness.a import x\n    from . import c\n")
    assert {"src.harness.a", "src.harness.c"} <= _imported(source, "src.harness.b")
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b"}, "b": set()}) is None
