#!/usr/bin/env python3
"""Prints the graph of ffi/host (and ffi/core) files, and fails on a cycle.

A node is a file stem: host/x.c and host/x.h are one node, "x". An edge x -> y
means x includes y's header or calls a function defined in y.c (read from the
compiled objects with nm, so it is the real call graph, not a guess).

  make graph, or python3 test/graph.py [BUILD] from ffi/ after `make` (BUILD: build)
"""
import os
import re
import subprocess
import sys

build = sys.argv[1] if len(sys.argv) > 1 else "build"
folders = ["core", "host"]


def node(folder, name):
    return f"{folder}/{os.path.splitext(name)[0]}"


def symbols(obj, flag):
    out = subprocess.run(["nm", flag, obj], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


nodes = set()
defined_in = {}
objects = {}
for folder in folders:
    for name in sorted(os.listdir(folder)):
        if not name.endswith((".c", ".h")):
            continue
        nodes.add(node(folder, name))
        if name.endswith(".c"):
            obj = os.path.join(build, folder, name[:-2] + ".o")
            objects[node(folder, name)] = obj
            for sym in symbols(obj, "--defined-only"):
                defined_in[sym] = node(folder, name)

edges = {n: set() for n in nodes}
include = re.compile(r'^#include "([^"]+)"', re.M)
for folder in folders:
    for name in os.listdir(folder):
        if not name.endswith((".c", ".h")):
            continue
        src = node(folder, name)
        for target in include.findall(open(os.path.join(folder, name)).read()):
            if target == "llmdd.h":
                continue
            dst = node(*target.split("/")) if "/" in target else node(folder, target)
            if dst != src:
                edges[src].add(dst)
for src, obj in objects.items():
    for sym in symbols(obj, "--undefined-only"):
        dst = defined_in.get(sym)
        if dst is not None and dst != src:
            edges[src].add(dst)

for src in sorted(edges):
    print(f"{src:16} -> {' '.join(sorted(edges[src])) or '(nothing)'}")

# Depth-first search for a cycle.
state, stack = {}, []


def visit(n):
    state[n] = "open"
    stack.append(n)
    for m in sorted(edges[n]):
        if state.get(m) == "open":
            cycle = stack[stack.index(m):] + [m]
            sys.exit("cycle: " + " -> ".join(cycle))
        if m not in state:
            visit(m)
    stack.pop()
    state[n] = "done"


for n in sorted(nodes):
    if n not in state:
        visit(n)
print(f"{len(nodes)} files, {sum(len(e) for e in edges.values())} edges, no cycle")
