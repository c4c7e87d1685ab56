#!/usr/bin/env python3
"""The module graph of src/ drawn from the imports, and its circles.

    ops/module-graph.py [--edges]

A module is a file (src/a/b.rs and src/a/b/mod.rs are `a::b`). An edge A -> B is a path in A
naming B: `crate::a::b::Item`, `super::b`, or a `use` group under one of them. A child's
declaration in its parent (`mod b;`) is not an edge. Prints every strongly connected set of
two or more modules (a circle) and exits 1 if there is one; `--edges` also lists every edge.
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"


def module_of(path):
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts in (["lib"], ["main"]):
        return ()
    return tuple(parts)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def without_tests(text):
    # A trailing `#[cfg(test)] mod tests { ... }` imports its own parent by design.
    i = text.find("#[cfg(test)]")
    return text if i < 0 else text[:i]


def paths(text):
    """Every `crate::...` or `super::...` path, with `use` groups expanded one level."""
    found = []
    for m in re.finditer(r"\b(crate|super(?:::super)*)((?:::\w+)+)(::\{([^;]*?)\})?", text):
        head, tail, group = m.group(1), m.group(2), m.group(4)
        segs = tail.strip(":").split("::")
        if group:
            for item in re.split(r",\s*", group):
                first = re.match(r"\s*(\w+)", item)
                if first:
                    found.append((head, segs + [first.group(1)]))
        else:
            found.append((head, segs))
    return found


def resolve(module, head, segs, modules):
    if head == "crate":
        base = ()
    else:
        depth = head.count("super")
        base = module[: len(module) - depth]
    best = None
    for i in range(1, len(segs) + 1):
        candidate = base + tuple(segs[:i])
        if candidate in modules:
            best = candidate
    return best


def main():
    files = {module_of(p): p for p in SRC.rglob("*.rs")}
    modules = set(files)
    edges = {m: set() for m in modules}
    for module, path in files.items():
        text = without_tests(strip_comments(path.read_text()))
        for head, segs in paths(text):
            target = resolve(module, head, segs, modules)
            # A module's own children and ancestors' declarations are not imports of note
            # unless named; a path into itself is not an edge.
            if target and target != module and target != module[: len(target)]:
                edges[module].add(target)
    if "--edges" in sys.argv:
        for m in sorted(edges):
            for t in sorted(edges[m]):
                print("::".join(m), "->", "::".join(t))
    circles = tarjan(edges)
    for c in circles:
        print("circle:", ", ".join(sorted("::".join(m) for m in c)))
    print(f"{len(modules)} modules, {sum(len(v) for v in edges.values())} edges, {len(circles)} circles")
    return 1 if circles else 0


def tarjan(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
