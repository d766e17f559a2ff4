#!/bin/bash
# Linters and the type checker, run first by scripts/test.sh: ruff (lint and format), mypy
# --strict over the package, the tests and the benchmark, and dib-lint over the elements.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/.venv/bin

"$bin/ruff" check .
"$bin/ruff" format --check .

# mypy finds modules in folders, not through setuptools' package-dir mapping (imgbuild.qemu is
# qemu/), so it reads the package from a tree of links laid out as installed.
tree=$root/build/typecheck
rm -rf "$tree"
mkdir -p "$tree/imgbuild"
for entry in "$root"/imgbuild/* "$root"/builder "$root"/cloudinit "$root"/qemu; do
    [ "$(basename "$entry")" = __pycache__ ] || ln -s "$entry" "$tree/imgbuild/"
done
(cd "$tree" && MYPYPATH="$tree:$root/tests/unit" "$bin/mypy" --config-file "$root/pyproject.toml" \
    --cache-dir "$root/build/mypy-cache" imgbuild "$root"/tests/unit/*.py "$root"/tests/integration/*.py \
    "$root"/bench/run.py)

# dib-lint reads ELEMENTS_DIR and LIB_DIR (diskimage-builder's own library scripts, not ours
# to lint: an empty folder).
lib=$(mktemp -d)
trap 'rm -rf "$lib"' EXIT
PATH=$bin:$PATH ELEMENTS_DIR=elements LIB_DIR=$lib "$bin/dib-lint"
