"""The dependency graph between entries (pure): unknown names, cycles, shutdown order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Graph = Mapping[str, Mapping[str, str]]  # name -> {dependency: condition}


def unknown_names(graph: Graph, known: Iterable[str]) -> dict[str, list[str]]:
    names = set(known)
    return {n: sorted(d for d in deps if d not in names) for n, deps in graph.items()
            if any(d not in names for d in deps)}


def find_cycle(graph: Graph) -> list[str] | None:
    """One cycle as a path that ends where it starts (``a -> b -> a``), or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        color[node] = GREY
        stack.append(node)
        for dep in sorted(graph.get(node, {})):
            state = color.get(dep, BLACK)  # names outside the graph have no edges
            if state == GREY:
                return [*stack[stack.index(dep):], dep]
            if state == WHITE and (found := visit(dep)):
                return found
        stack.pop()
        color[node] = BLACK
        return None

    for node in sorted(graph):
        if color[node] == WHITE and (found := visit(node)):
            return found
    return None


def start_waves(graph: Graph) -> list[list[str]]:
    """Names in waves: each wave only depends on earlier ones (the graph must be acyclic)."""
    remaining = {n: set(d for d in deps if d in graph) for n, deps in graph.items()}
    waves: list[list[str]] = []
    while remaining:
        ready = sorted(n for n, deps in remaining.items() if not deps)
        if not ready:
            raise ValueError(f"dependency cycle: {' -> '.join(find_cycle(graph) or [])}")
        waves.append(ready)
        for name in ready:
            del remaining[name]
        for deps in remaining.values():
            deps.difference_update(ready)
    return waves


def shutdown_waves(graph: Graph) -> list[list[str]]:
    """Reverse dependency order: dependents stop before what they depend on; entries nothing
    depends on (standalone ones too) all stop in the first wave."""
    dependents: dict[str, dict[str, str]] = {n: {} for n in graph}
    for name, deps in graph.items():
        for dep in deps:
            if dep in dependents:
                dependents[dep][name] = "started"
    return start_waves(dependents)
