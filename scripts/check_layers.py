#!/usr/bin/env python3
"""Checks that no #include under src/ runs from a lower layer to a higher one.

The layers are the table in README.md's "Layout" section (lines "N  src/FOLDER  what it owns"):
a file may include headers of its own folder and of folders with a lower number, never of a folder
with the same or a higher number. Usage: check_layers.py [REPO_ROOT] (default: this script's repo).
Exits 1 and lists every offending line; also when a folder under src/ is missing from the table or
the table names one that does not exist.
"""
import os
import re
import sys

SOURCE_SUFFIXES = (".cpp", ".hpp", ".h", ".cu", ".cuh")
TABLE_ROW = re.compile(r"^\s*(\d+)\s+src/(\S+)")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def read_layers(readme):
    """{folder: layer} from the rows of the layer table in README.md's Layout section."""
    layers, in_layout = {}, False
    for line in open(readme, encoding="utf-8"):
        if line.startswith("## "):
            in_layout = line.strip() == "## Layout"
            continue
        m = TABLE_ROW.match(line) if in_layout else None
        if m:
            layers[m.group(2).rstrip("/")] = int(m.group(1))
    return layers


def folder_of(path):
    """First component of a path under src/ ("runner" for runner/runner.hpp, "main.cpp" for main.cpp)."""
    return path.split("/", 1)[0]


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    src = os.path.join(root, "src")
    layers = read_layers(os.path.join(root, "README.md"))
    if not layers:
        print("check_layers: README.md has no layer table in its Layout section")
        return 1
    problems = [f"README.md's layer table names src/{f}, which does not exist"
                for f in sorted(layers) if not os.path.exists(os.path.join(src, f))]
    for dirpath, _, files in os.walk(src):
        for name in sorted(files):
            if not name.endswith(SOURCE_SUFFIXES):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), src).replace(os.sep, "/")
            own = folder_of(rel)
            if own not in layers:
                problems.append(f"src/{rel}: folder '{own}' is not in README.md's layer table")
                continue
            for number, line in enumerate(open(os.path.join(dirpath, name), encoding="utf-8"), 1):
                m = INCLUDE.match(line)
                if not m or "/" not in m.group(1):
                    continue  # system headers, and headers next to the file
                target = folder_of(m.group(1))
                if target == own:
                    continue
                if target not in layers:
                    problems.append(f"src/{rel}:{number}: includes '{m.group(1)}' from folder '{target}', "
                                    "which is not in README.md's layer table")
                elif layers[target] >= layers[own]:
                    problems.append(f"src/{rel}:{number}: {own} (layer {layers[own]}) includes '{m.group(1)}' "
                                    f"of {target} (layer {layers[target]})")
    for p in problems:
        print(p)
    if problems:
        print(f"check_layers: {len(problems)} include(s) against the layer table in README.md")
        return 1
    print(f"check_layers: every include under src/ follows the {len(layers)} layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
