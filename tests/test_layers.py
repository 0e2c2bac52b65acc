"""The package's layer rule, read from the source with `ast` (no import of the package needed):

    geometry -> render -> data -> generate -> model -> io -> evaluation -> train -> jobs

A module may import any4d_jax modules of its own layer or of layers to its left, never to its right; no
import cycle between modules; a function-level import of any4d_jax is allowed only with a comment on its line
saying why it is lazy (the `.a4d` reader keeps `import` numpy-only). viewer/ stands alone (it serves files).
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "any4d_jax")

LAYERS = ["geometry", "render", "data", "generate", "model", "io", "evaluation", "train", "jobs"]
# Top-level modules outside the folders, and the layer they sit in.
TOP_LEVEL = {
    "any4d_jax": -1,
    "any4d_jax.errors": -1,
    "any4d_jax.files": -1,
    "any4d_jax.explore": LAYERS.index("jobs"),
    "any4d_jax.viewer": -1,
}


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[: -len(".py")].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _modules() -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                out[_module_name(path)] = path
    return out


MODULES = _modules()


def layer(module: str) -> int:
    """Layer index of a module (its folder's), -1 for modules every layer may import (package roots)."""
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    parts = module.split(".")
    if parts[1] == "viewer":
        return -1
    if parts[1] not in LAYERS:
        raise AssertionError(f"{module} is in no layer: add its folder to LAYERS in tests/test_layers.py")
    return LAYERS.index(parts[1])


def _resolve(name: str) -> str:
    """The module an import of `name` loads (a name imported from a package may be a submodule)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports(path: str) -> list[tuple[str, int, bool, str]]:
    """(imported module, line, at function level, source line) of every any4d_jax import in a file."""
    src = open(path).read()
    lines = src.splitlines()
    tree = ast.parse(src)
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names = [f"{child.module}.{a.name}" for a in child.names] or [child.module]
            for n in names:
                if n.split(".")[0] == "any4d_jax":
                    found.append((_resolve(n), child.lineno, in_function, lines[child.lineno - 1]))
            visit(child, nested)

    visit(tree, False)
    return found


def test_every_module_is_in_a_layer():
    for m in MODULES:
        layer(m)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_left_and_lazy_ones_say_why(module):
    mine = layer(module)
    for target, line, lazy, text in imports(MODULES[module]):
        if target == module:
            continue
        where = f"{os.path.relpath(MODULES[module], ROOT)}:{line}"
        assert layer(target) <= mine, (
            f"{where} imports {target} (layer {LAYERS[layer(target)]}) from layer {LAYERS[mine]}: "
            f"imports must point left in {' -> '.join(LAYERS)}"
        )
        if lazy:
            assert "#" in text, f"{where}: a function-level import of {target} needs a comment saying why"


def test_no_import_cycles():
    graph = {m: {t for t, _, lazy, _ in imports(p) if t != m and t in MODULES} for m, p in MODULES.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                cycle = stack[stack.index(t) :] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_the_checker_sees_a_wrong_way_import(tmp_path):
    """The rule can fail: a model module importing train is flagged (on a copy, not on the package)."""
    bad = tmp_path / "bad.py"
    bad.write_text("from any4d_jax.train import loop\n\ndef f():\n    from any4d_jax.model import motion\n")
    found = imports(str(bad))
    assert [(t, lazy) for t, _, lazy, _ in found] == [
        ("any4d_jax.train.loop", False),
        ("any4d_jax.model.motion", True),
    ]
    assert layer("any4d_jax.train.loop") > layer("any4d_jax.model.gaussians")
    assert "#" not in found[1][3]  # an uncommented lazy import would be refused


def test_importing_the_package_starts_no_jax_backend():
    """JAX's GPU allocator is configured by environment variables read when its first backend starts
    (jobs/accelerator.py, before a CUDA generator loads), and `jax.distributed.initialize` must come before
    it too: so importing any module of the package must not create a JAX array (module-level constants are
    numpy). Checked in a fresh interpreter over every module."""
    import subprocess
    import sys

    names = sorted(n for n in _modules() if not n.startswith("any4d_jax.viewer.static"))
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}:\n"
        "    importlib.import_module(n)\n"
        "from jax._src import xla_bridge\n"
        "print(xla_bridge.backends_are_initialized())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False", "an import created a JAX array (use numpy there)"
