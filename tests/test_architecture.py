"""The rules of docs/ARCHITECTURE.md, enforced by parsing every product module's imports (ast, nothing is run):

1. gradio is imported only in pages/;
2. gsv_core imports no eval, refaudio, pages or datasets (a ``__main__`` composition root may: it wires rooms);
3. pages import no torch and no model or engine internals (gsv_core.models, .loading, .checkpoints, .engine.pipeline,
   .engine.registry): they reach the engine through gsv_core.api and the services;
4. nothing outside gsv_core names ``TTSEngine`` or ``ModelRegistry``: every front end opens the engine through the
   facade (``gsv_core.api.Engine``);
5. the global ``config.settings`` is read only by entry points (``__main__`` modules, modules with a ``__main__``
   guard, main_launcher.py); library code takes its settings as an argument;
6. eval, refaudio and datasets import no pages.

Each rule is also shown failing on a deliberately bad module given to the same checker.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("gsv_core", "eval", "refaudio", "pages", "datasets", "bench")
ENGINE_INTERNALS = ("gsv_core.models", "gsv_core.loading", "gsv_core.checkpoints", "gsv_core.engine.pipeline",
                    "gsv_core.engine.registry")


def _modules() -> list[tuple[str, str]]:
    files = [ROOT / "main_launcher.py", ROOT / "config.py"]
    for room in ROOMS:
        files += sorted((ROOT / room).rglob("*.py"))
    return [(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) for p in files]


def _imports(tree: ast.AST, path: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, absolute module, imported names) of every import, relative ones resolved against ``path``."""
    package = path.removesuffix(".py").replace("/", ".").split(".")
    if package[-1] != "__init__":
        package = package[:-1]
    else:
        package = package[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            out.append((node.lineno, module, tuple(a.name for a in node.names)))
    return out


def _is_entry_point(path: str, tree: ast.AST) -> bool:
    if path.endswith("__main__.py") or path == "main_launcher.py":
        return True
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            left = node.test.left
            if isinstance(left, ast.Name) and left.id == "__name__":
                return True
    return False


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(path: str, source: str) -> list[str]:
    """Every broken rule of one module, as 'path:line: why'."""
    tree = ast.parse(source, filename=path)
    room = path.split("/", 1)[0].removesuffix(".py")
    entry = _is_entry_point(path, tree)
    found = []

    def bad(line: int, why: str) -> None:
        found.append(f"{path}:{line}: {why}")

    for line, module, names in _imports(tree, path):
        if _under(module, "gradio") and room != "pages":
            bad(line, "gradio outside pages/ (rule 1)")
        if room == "gsv_core" and not path.endswith("__main__.py"):
            for other in ("eval", "refaudio", "pages", "datasets"):
                if _under(module, other):
                    bad(line, f"gsv_core imports {other} (rule 2; only a __main__ composition root may)")
        if room == "pages":
            if _under(module, "torch"):
                bad(line, "pages import torch (rule 3)")
            for internal in ENGINE_INTERNALS:
                if _under(module, internal):
                    bad(line, f"pages import {internal} (rule 3: use gsv_core.api)")
            if module in ("gsv_core", "gsv_core.engine") and {"models", "loading", "checkpoints"} & set(names):
                bad(line, "pages import model internals (rule 3)")
        if room != "gsv_core" and {"TTSEngine", "ModelRegistry"} & set(names):
            bad(line, "TTSEngine/ModelRegistry imported outside gsv_core (rule 4: use gsv_core.api.Engine)")
        if module == "config" and "settings" in names and not entry:
            bad(line, "the global config.settings read by library code (rule 5: pass settings in)")
        if room in ("eval", "refaudio", "datasets") and _under(module, "pages"):
            bad(line, f"{room} imports pages (rule 6)")
    if room != "gsv_core":
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("TTSEngine", "ModelRegistry"):
                bad(node.lineno, f"{node.attr} used outside gsv_core (rule 4)")
    if not entry:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "settings" and isinstance(node.value, ast.Name) \
                    and node.value.id == "config":
                bad(node.lineno, "config.settings read by library code (rule 5)")
    return found


def test_the_code_follows_the_architecture():
    problems = [v for path, source in _modules() for v in violations(path, source)]
    assert not problems, "architecture rules broken:\n" + "\n".join(problems)


@pytest.mark.parametrize("path, source, rule", [
    ("gsv_core/engine/bad.py", "import gradio as gr\n", "rule 1"),
    ("eval/bad.py", "from gradio import Blocks\n", "rule 1"),
    ("gsv_core/bad.py", "from eval.run import EvalRunner\n", "rule 2"),
    ("gsv_core/engine/bad.py", "from ...refaudio import service\n", "rule 2"),
    ("pages/bad.py", "import torch\n", "rule 3"),
    ("pages/bad.py", "from gsv_core.models.s1 import Text2Semantic\n", "rule 3"),
    ("pages/bad.py", "from gsv_core.engine.registry import Entry\n", "rule 3"),
    ("refaudio/bad.py", "from gsv_core.engine import TTSEngine, ModelRegistry\n", "rule 4"),
    ("bench/bad.py", "import gsv_core.engine as e\nengine = e.TTSEngine(e.ModelRegistry(None))\n", "rule 4"),
    ("gsv_core/text/bad.py", "def f():\n    from config import settings\n    return settings\n", "rule 5"),
    ("eval/bad.py", "import config\nx = config.settings.port\n", "rule 5"),
    ("refaudio/bad.py", "from pages.services import Services\n", "rule 6"),
])
def test_each_rule_catches_a_deliberately_bad_module(path, source, rule):
    found = violations(path, source)
    assert any(rule in v for v in found), found


def test_entry_points_and_the_facade_are_allowed():
    assert violations("gsv_core/finetune/__main__.py", "from eval.selection import select\n") == []
    assert violations("gsv_core/tool.py", "from config import settings\nif __name__ == '__main__':\n    pass\n") == []
    assert violations("pages/ok.py", "from gsv_core.api import Engine\nimport gradio as gr\n") == []
