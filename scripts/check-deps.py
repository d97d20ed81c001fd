#!/usr/bin/env python3
"""Checks the dependency tree the way `cargo deny check licenses bans sources`
would, offline: every package comes from crates.io (or this repository), every
license expression is satisfiable with permissive licenses only, and no crate
is present in more than the allowed number of versions. Also checks that our
`rust-version` is true: no resolved dependency declares a newer one.

Usage: scripts/check-deps.py   (exit 1 with one line per problem)
"""
import json
import re
import subprocess
import sys

ALLOWED_LICENSES = {
    "MIT", "Apache-2.0", "Apache-2.0 WITH LLVM-exception", "BSD-2-Clause",
    "BSD-3-Clause", "ISC", "Zlib", "Unicode-3.0", "Unicode-DFS-2016",
    "Unlicense", "CC0-1.0", "0BSD", "BSL-1.0", "MPL-2.0",
}
CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"
# Crates that may appear in two versions at once (common in the ecosystem).
MAX_VERSIONS = 2


def satisfiable(expr: str) -> bool:
    """True when the SPDX expression can be met with allowed licenses only."""
    expr = expr.replace("/", " OR ")  # old crates.io style "MIT/Apache-2.0"
    tokens = re.findall(r"\(|\)|\bAND\b|\bOR\b|[^\s()]+(?:\s+WITH\s+[^\s()]+)?", expr)
    pos = 0

    def parse_or():
        nonlocal pos
        value = parse_and()
        while pos < len(tokens) and tokens[pos] == "OR":
            pos += 1
            value = parse_and() or value
        return value

    def parse_and():
        nonlocal pos
        value = parse_atom()
        while pos < len(tokens) and tokens[pos] == "AND":
            pos += 1
            value = parse_atom() and value
        return value

    def parse_atom():
        nonlocal pos
        token = tokens[pos]
        pos += 1
        if token == "(":
            value = parse_or()
            pos += 1  # ")"
            return value
        return token in ALLOWED_LICENSES

    try:
        return parse_or() and pos == len(tokens)
    except IndexError:
        return False


def parse_rust_version(text: str) -> tuple:
    """"1.85" or "1.85.0" as a comparable tuple (missing parts are 0)."""
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def rust_version_problems(packages) -> list:
    """Dependencies whose rust-version is newer than the oldest one our
    workspace members declare (a member without one is a problem itself)."""
    problems = []
    ours = [p for p in packages if p.get("source") is None]
    declared = []
    for package in ours:
        if package.get("rust_version"):
            declared.append((parse_rust_version(package["rust_version"]), package["rust_version"]))
        else:
            problems.append(f"{package['name']}: no rust-version in its manifest")
    if not declared:
        return problems
    oldest, oldest_text = min(declared)
    for package in packages:
        if package.get("source") is None or not package.get("rust_version"):
            continue
        if parse_rust_version(package["rust_version"]) > oldest:
            problems.append(
                f"{package['name']} {package['version']}: needs Rust {package['rust_version']}, "
                f"newer than our rust-version {oldest_text} (raise it in Cargo.toml)")
    return problems


def main() -> int:
    metadata = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1"],
        check=True, capture_output=True, text=True).stdout)
    problems = rust_version_problems(metadata["packages"])
    versions = {}
    for package in metadata["packages"]:
        name, version, source = package["name"], package["version"], package.get("source")
        if source is None:
            continue  # this workspace
        if source != CRATES_IO:
            problems.append(f"{name} {version}: source {source} is not crates.io")
        license_expr = package.get("license")
        if not license_expr:
            problems.append(f"{name} {version}: no license expression")
        elif not satisfiable(license_expr):
            problems.append(f"{name} {version}: license {license_expr!r} is not in the allowed set")
        versions.setdefault(name, set()).add(version)
    for name, seen in sorted(versions.items()):
        if len(seen) > MAX_VERSIONS:
            problems.append(f"{name}: {len(seen)} versions in the tree ({', '.join(sorted(seen))})")
    for problem in problems:
        print(f"check-deps: {problem}")
    count = sum(len(v) for v in versions.values())
    print(f"check-deps: {count} crates from crates.io checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
