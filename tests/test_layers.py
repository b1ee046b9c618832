"""The layers hold: imports point one way, frameworks stay in backends, plugins stay apart.

Every ``import`` in ``src/hookline`` is read from the source (at module level and inside
functions alike; only ``if TYPE_CHECKING:`` blocks are left out, since they never run), and
checked against the contract in README.md's Architecture section::

    hookspecs (+ errors, settings, distributed, run)  <-  manager  <-  engine
        <-  backends, plugins (neither imports the other)  <-  api  <-  bridges  <-  cli
        <-  testing

A host trainer (transformers, lightning, keras) is imported only by its own bridge module.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"

#: Each layer's modules (a name covers its submodules), lowest first.
LAYERS: dict[str, tuple[str, ...]] = {
    "base": (
        "hookline", "hookline.errors", "hookline.settings", "hookline.distributed",
        "hookline.hookspecs", "hookline.run",
    ),
    "manager": ("hookline.manager",),
    "engine": ("hookline.engine",),
    "backends": ("hookline.backends",),
    "plugins": ("hookline.plugins",),
    "api": ("hookline.api", "hookline.flags", "hookline.recipe"),
    "bridges": ("hookline.bridges",),
    "cli": ("hookline.cli", "hookline.__main__"),
    "testing": ("hookline.testing",),
}
RANK = {
    "base": 0, "manager": 1, "engine": 2, "backends": 3, "plugins": 3, "api": 4, "bridges": 5,
    "cli": 6, "testing": 7,
}
FRAMEWORKS = {
    "torch", "jax", "jaxlib", "flax", "optax", "numpy", "tensorflow", "sklearn",
}
#: Each host trainer and the one module that may import it.
HOSTS = {
    "transformers": "hookline.bridges.hf",
    "accelerate": "hookline.bridges.hf",
    "lightning": "hookline.bridges.lightning",
    "pytorch_lightning": "hookline.bridges.lightning",
    "keras": "hookline.bridges.keras",
}
#: The one module the built-in plugins share helpers through.
PLUGIN_SUPPORT = "hookline.plugins.support"


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> str:
    """The layer of a hookline module: the one whose longest name covers it."""
    best = max(
        ((layer, prefix) for layer, prefixes in LAYERS.items() for prefix in prefixes
         if _within(module, prefix)),
        key=lambda pair: len(pair[1]),
    )
    return best[0]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imports(path: Path, module: str, root: Path) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every import that can run; ``from a import b`` also
    yields ``a.b`` when that is a module of the tree."""
    found: list[tuple[int, str]] = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if _type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append((node.lineno, base))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                relative = Path(*candidate.split("."))
                if (root / relative).is_dir() or (root / relative).with_suffix(".py").is_file():
                    found.append((node.lineno, candidate))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def violations(root: Path) -> list[str]:
    """Every import in the tree under ``root`` (holding the ``hookline`` package) that breaks
    the contract, as ``file:line: why``."""
    problems = []
    for path in sorted((root / "hookline").rglob("*.py")):
        module = module_name(path, root)
        layer = layer_of(module)
        where = f"{path.relative_to(root)}"
        for line, target in imports(path, module, root):
            top = target.partition(".")[0]
            if top in FRAMEWORKS and layer != "backends":
                problems.append(f"{where}:{line}: {module} ({layer}) imports the framework "
                                f"{target}; only hookline.backends may")
            if top in HOSTS and module != HOSTS[top]:
                problems.append(f"{where}:{line}: {module} imports the host {target}; only "
                                f"{HOSTS[top]} may")
            if top != "hookline" or target == "hookline":
                continue
            target_layer = layer_of(target)
            if RANK[target_layer] > RANK[layer] or (
                {layer, target_layer} == {"backends", "plugins"}
            ):
                problems.append(f"{where}:{line}: {module} ({layer}) imports {target} "
                                f"({target_layer})")
            if (
                layer == "plugins" and target_layer == "plugins"
                and not _within(module, PLUGIN_SUPPORT)
                and not _within(target, PLUGIN_SUPPORT) and target != "hookline.plugins"
            ):
                problems.append(f"{where}:{line}: plugin {module} imports the plugin {target}; "
                                f"shared helpers belong in {PLUGIN_SUPPORT}")
            if layer == "backends" and target_layer == "backends":
                mine, theirs = module.split(".")[:3], target.split(".")[:3]
                if (
                    len(mine) == 3 and len(theirs) == 3 and mine != theirs
                    and (root / Path(*theirs)).is_dir()
                ):
                    problems.append(f"{where}:{line}: backend {module} imports the backend "
                                    f"{target}")
    return problems


def test_every_import_follows_the_layers():
    assert violations(SOURCE) == []


@pytest.mark.parametrize(
    ("file", "line", "expected"),
    [
        ("hookline/engine/trainer.py", "import hookline.plugins",
         "hookline.engine.trainer (engine) imports hookline.plugins (plugins)"),
        ("hookline/engine/phase.py", "from hookline.backends.torch import TorchTask",
         "imports hookline.backends.torch (backends)"),
        ("hookline/manager/dispatch.py", "from hookline.api import Model",
         "hookline.manager.dispatch (manager) imports hookline.api (api)"),
        ("hookline/plugins/early_stopping.py", "from hookline.plugins import checkpoint",
         "plugin hookline.plugins.early_stopping imports the plugin "
         "hookline.plugins.checkpoint"),
        ("hookline/plugins/checkpoint.py", "    import torch",
         "imports the framework torch; only hookline.backends may"),
        ("hookline/engine/metrics.py", "import numpy as np",
         "imports the framework numpy"),
        ("hookline/backends/torch/task.py", "from hookline.plugins.support import plain",
         "(backends) imports hookline.plugins.support (plugins)"),
        ("hookline/bridges/loop.py", "    import transformers",
         "hookline.bridges.loop imports the host transformers; only hookline.bridges.hf may"),
        ("hookline/plugins/summary.py", "    import lightning.pytorch",
         "imports the host lightning.pytorch; only hookline.bridges.lightning may"),
        ("hookline/bridges/loop.py", "    import torch",
         "imports the framework torch; only hookline.backends may"),
        ("hookline/api.py", "from hookline.bridges.loop import HookLoop",
         "hookline.api (api) imports hookline.bridges.loop (bridges)"),
    ],
)
def test_the_contract_catches_an_import_against_the_layers(tmp_path, file, line, expected):
    shutil.copytree(SOURCE / "hookline", tmp_path / "hookline")
    path = tmp_path / file
    text = path.read_text()
    if line.startswith("    "):  # inside a function, where lazy imports hide
        text += f"\n\ndef _added():\n{line}\n"
    else:
        text = text.replace("from __future__ import annotations\n",
                            f"from __future__ import annotations\n\n{line}\n", 1)
    path.write_text(text)
    found = violations(tmp_path)
    assert len(found) == 1, found
    assert expected in found[0]


def test_type_checking_imports_are_not_runtime_dependencies(tmp_path):
    shutil.copytree(SOURCE / "hookline", tmp_path / "hookline")
    path = tmp_path / "hookline" / "engine" / "trainer.py"
    path.write_text(path.read_text() + "\nif TYPE_CHECKING:\n    import hookline.plugins\n")
    assert violations(tmp_path) == []


def test_importing_the_engine_loads_no_plugin_backend_or_framework():
    code = (
        "import sys, hookline.engine\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy') or "
        "m.startswith(('hookline.plugins', 'hookline.backends', 'hookline.api', "
        "'hookline.cli', 'hookline.flags'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_public_names_all_resolve():
    import hookline

    for name in hookline.__all__:
        assert getattr(hookline, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'Trainr'"):
        hookline.Trainr  # noqa: B018
