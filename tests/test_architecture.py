"""The layout keeps its promises: no import cycles, lower layers never import higher ones, short modules.

The import graph is read from the source with ``ast`` (every import, also those inside functions),
so a cycle cannot hide behind a function-level import.
"""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "capstone"

# Each part of the package and its rank: a module may import its own part and lower ranks only.
# README's "How the code is laid out" says the same in words.
RANKS = {
    "capstone": 0, "capstone.errors": 0,
    "capstone.config": 1,
    "capstone.support": 2,
    "capstone.captions": 3, "capstone.layers": 3, "capstone.encoders": 3,
    "capstone.decoder": 4, "capstone.data": 4,
    "capstone.fast": 5, "capstone.attention": 6,
    "capstone.training": 7, "capstone.final_model": 7,
    "capstone.evaluation": 8, "capstone.self_critical": 8,
    "capstone.grading": 9, "capstone.web": 9, "capstone.deploy": 9,
    "capstone.commands": 10,
    "capstone.__main__": 11,
}
COURSE = {"capstone.captions", "capstone.layers", "capstone.decoder", "capstone.training", "capstone.final_model",
          "capstone.config"}


def module_name(path):
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_modules():
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(path, modules):
    """The package modules that ``path`` imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from capstone.encoders import cnn`` imports the submodule; ``... import get_cnn_encoder`` the package
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph():
    modules = package_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def find_cycle(graph):
    """One import cycle as a list of modules [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def part_of(module):
    """The entry of RANKS a module belongs to (the longest matching prefix)."""
    matches = [part for part in RANKS if module == part or module.startswith(part + ".")]
    return max(matches, key=len)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and graph["capstone.training"]  # the graph was really read
    assert find_cycle(graph) is None


def upward_imports(graph):
    """'a imports b' for each import of a part of the same or a higher rank than the importer's own."""
    return [f"{module} imports {other}" for module, imported in sorted(graph.items()) for other in sorted(imported)
            if part_of(other) != part_of(module) and RANKS[part_of(other)] >= RANKS[part_of(module)]
            and part_of(module) != "capstone"]


def test_the_rank_check_finds_upward_imports():
    graph = {"capstone.captions": {"capstone.web.app", "capstone.errors"}, "capstone.layers": {"capstone.captions"},
             "capstone.training": {"capstone.decoder", "capstone.fast.ops"}}
    assert upward_imports(graph) == ["capstone.captions imports capstone.web.app",
                                     "capstone.layers imports capstone.captions"]


def test_lower_layers_never_import_higher_ones():
    assert upward_imports(import_graph()) == []


@pytest.mark.parametrize("forbidden", ["capstone.web", "capstone.evaluation", "capstone.grading",
                                       "capstone.commands"])
def test_the_course_never_imports_the_rooms_above_it(forbidden):
    graph = import_graph()
    for module in COURSE:
        assert not {m for m in graph[module] if part_of(m) == forbidden}, module


def test_every_module_belongs_to_a_ranked_part():
    assert all(part_of(module) in RANKS for module in package_modules())


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in package_modules().items() if (n := len(path.read_text().splitlines())) > 400}
    assert long == {}
