#!/usr/bin/env bash
# Install everything into ./.venv and run the whole test suite (learning tests included).
# Pass pytest options through, e.g. `bash scripts/test.sh -m "not learning"` while editing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
. .venv/bin/activate
export XLA_FLAGS="${XLA_FLAGS:-} --xla_cpu_multi_thread_eigen=false"
exec python -m pytest -n 2 --dist loadfile -q "$@"
