#!/bin/bash
# The whole test suite: the linters and the type checker, fast unit tests, then the slow
# integration tests that build real images and boot real VMs (shared across tests: one build,
# one cluster). Lint findings fail the run, after the tests have had their say.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/lint.sh
lint=$?
.venv/bin/pytest -v -rA --durations=20 tests/unit tests/integration "$@"
tests=$?
[ "$lint" -eq 0 ] || echo "scripts/lint.sh failed (exit $lint): see its findings above" >&2
[ "$tests" -ne 0 ] && exit "$tests"
exit "$lint"
