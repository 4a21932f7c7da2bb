"""The package's import graph: no cycle, and no module takes from a hook.

Read from the source with ``ast``: an edge for each ``import msnet_plugin.X``
and ``from .X import ...`` / ``from msnet_plugin.X import ...`` (to the
submodule when a name imported is one), at any depth in a file.
"""
import ast
from pathlib import Path

from repo_paths import REPO

PACKAGE = REPO / 'msnet_plugin'


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def import_graph():
    """module -> the plugin's modules it imports."""
    files = {module_name(path): path for path in PACKAGE.rglob('*.py')}
    graph = {}
    for name, path in files.items():
        is_package = path.name == '__init__.py'
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            if not isinstance(node, ast.ImportFrom):
                continue
            base = node.module or ''
            if node.level:
                anchor = name.split('.')
                anchor = anchor[:len(anchor) - node.level + is_package]
                base = '.'.join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f'{base}.{alias.name}'
                targets.add(submodule if submodule in files else base)
        graph[name] = sorted(target for target in targets
                             if target in files and target != name)
    return graph


def find_cycle(graph):
    """One cycle as a list of modules, or None."""
    state = {}

    def visit(node, path):
        state[node] = 'open'
        for target in graph[node]:
            if state.get(target) == 'open':
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target, path + [target])
                if cycle:
                    return cycle
        state[node] = 'done'
        return None

    for start in graph:
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_the_reader_sees_relative_and_absolute_imports():
    graph = import_graph()
    assert 'msnet_plugin.errors' in graph['msnet_plugin.checks']
    assert 'msnet_plugin.models' in graph['msnet_plugin.checks']
    assert 'msnet_plugin.checkpoints' in graph[
        'msnet_plugin.hooks.checkpoint_match_hook']
    assert find_cycle({'a': ['b'], 'b': ['c'], 'c': ['a']}) == [
        'a', 'b', 'c', 'a']


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_only_the_hooks_package_imports_a_hook_module():
    importers = {
        module: [target for target in targets
                 if target.startswith('msnet_plugin.hooks.')]
        for module, targets in import_graph().items()
        if module != 'msnet_plugin.hooks'
    }
    assert {module: hooks for module, hooks in importers.items()
            if hooks} == {}
