"""The shape the code keeps (issue 20): no function in train/ longer than a screen or with a
parameter list to match, and no two modules of the project that import each other (a circle
that works only while one side imports late)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("train", "eval", "study", "xitt_tasks", "xitt_common", "tpu_scripts", "benchmarks")
MAX_LINES = 80   # def line to last line, docstring included
MAX_PARAMETERS = 15


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            params = (len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
                      + (a.vararg is not None) + (a.kwarg is not None))
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1, params


def test_no_function_in_train_is_over_a_screen_or_fifteen_parameters():
    too_big = [f"{path.relative_to(ROOT)}:{line} {name}: {lines} lines, {params} parameters"
               for path in sorted((ROOT / "train").rglob("*.py"))
               for name, line, lines, params in _functions(path)
               if lines > MAX_LINES or params > MAX_PARAMETERS]
    assert not too_big, "\n".join(too_big)


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path, me: str, modules: set[str]) -> set[str]:
    """Project modules that `path` (module `me`) imports, at the top or inside a function.
    `from pkg import sub` imports the module pkg.sub (pkg runs as its parent, not a circle)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names]
            names = [s for s in subs if s in modules] or [node.module]
        else:
            continue
        out.update(n for n in names if n in modules and n != me
                   and not me.startswith(n + "."))  # a package above this module
    return out


def test_no_two_modules_import_each_other():
    paths = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {_module_name(p) for p in paths}
    edges = {_module_name(p): _imports(p, _module_name(p), modules) for p in paths}
    circles = sorted(f"{a} <-> {b}" for a, targets in edges.items() for b in targets
                     if a < b and a in edges.get(b, ()))
    assert not circles, circles


def test_the_circle_check_sees_a_circle(tmp_path):
    """The check above can fail: two modules importing each other (one late) are found."""
    (tmp_path / "a.py").write_text("def f():\n    from pkg import b\n")
    (tmp_path / "b.py").write_text("import pkg.a\n")
    modules = {"pkg", "pkg.a", "pkg.b"}
    assert _imports(tmp_path / "a.py", "pkg.a", modules) == {"pkg.b"}
    assert _imports(tmp_path / "b.py", "pkg.b", modules) == {"pkg.a"}
