"""The package's modules import each other without a circle: lower layers (helpers, errors, data,
llm, model) never import upper ones (the registry, the trainers, quick_start)."""

import ast
from pathlib import Path

import pytest

import recbole_llm

PACKAGE = Path(recbole_llm.__file__).resolve().parent


def module_names():
    """``recbole_llm.*`` module name to its file, packages by their ``__init__.py``."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("recbole_llm",) + path.relative_to(PACKAGE).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(name, path, modules):
    """The package's modules that ``name`` imports anywhere in its file (module level or in a function),
    including ``importlib.import_module`` of a constant name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # ``from a import b`` imports the module a.b when there is one, else a.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            targets = [node.args[0].value]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def find_cycle(graph):
    """One import circle as a list of module names (first repeated at the end), or None."""
    state = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_no_module_of_the_package_imports_itself_back_through_others():
    modules = module_names()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert "recbole_llm.trainer" in graph["recbole_llm.utils"]  # the graph sees function-level imports too
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_names_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.slow
def test_a_stock_models_run_does_not_import_transformers():
    """The runner's path for BPR (config, model and trainer lookup) leaves transformers and peft unloaded:
    importing them costs seconds a stock model's run does not need."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from recbole_llm.config import Config\n"
            "from recbole_llm.quick_start import run_recbole_llm\n"
            "from recbole_llm.utils import get_model, get_trainer\n"
            "config = Config('BPR', 'ml-100k', config_dict={'state': 'WARNING'})\n"
            "get_trainer(get_model('BPR').type, 'BPR')\n"
            "print(sorted(m for m in ('transformers', 'peft') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
