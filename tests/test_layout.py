"""`main/` holds the library and the user's commands, and its modules import each other without a circle."""
import ast
from collections import deque

from conftest import ROOT

MAIN = ROOT / "main"


def import_graph(folder):
    """{module: {modules of `folder` it imports relatively}} of every .py file of `folder` (the package's own
    imports: `from . import x`, `from .x import y`), read with ast; wherever the import stands in the file."""
    modules = {path.stem for path in folder.glob("*.py")}
    graph = {}
    for path in sorted(folder.glob("*.py")):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module.split(".")[0]] if node.module else [alias.name for alias in node.names]
                imported.update(name for name in names if name in modules)
        graph[path.stem] = imported
    return graph


def circles(graph):
    """The import circles of `graph`: for every module on one, the shortest circle through it, as the list of its
    modules in import order with the first repeated at the end (['a', 'b', 'a']), starting at its alphabetically
    first module; each circle once."""
    found = set()
    for module in graph:
        came_from, queue = {}, deque(sorted(graph[module]))
        for target in queue:
            came_from.setdefault(target, module)
        while queue and module not in graph[queue[0]]:
            current = queue.popleft()
            for target in sorted(graph[current]):
                if target not in came_from:
                    came_from[target] = current
                    queue.append(target)
        if queue:
            circle = [queue[0]]
            while circle[-1] != module:
                circle.append(came_from[circle[-1]])
            circle.reverse()
            start = circle.index(min(circle))
            found.add(tuple(circle[start:] + circle[:start]))
    return sorted(list(circle) + [circle[0]] for circle in found)


def test_the_circle_finder_names_each_circle_once():
    graph = {"a": {"b"}, "b": {"c", "a"}, "c": {"a"}, "d": {"d"}, "e": set()}
    assert circles(graph) == [["a", "b", "a"], ["a", "b", "c", "a"], ["d", "d"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_modules_of_main_import_each_other_without_a_circle():
    graph = import_graph(MAIN)
    assert {"trainer", "tables", "encoder_table", "own_data"} <= set(graph) and "datasets" in graph["trainer"]
    found = circles(graph)
    assert found == [], "import circles in main/: " + "; ".join(" -> ".join(circle) for circle in found)


def test_main_holds_the_library_and_the_commands_not_the_benchmarks():
    assert not list(MAIN.glob("benchmark_*")), "benchmarks belong in benchmarks/"
    assert (ROOT / "benchmarks" / "benchmark_training.py").is_file()
