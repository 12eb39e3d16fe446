#!/usr/bin/env bash
# Install everything into ./.venv and run heron's main job end to end:
# train an agent, evaluate it, and write its report (runs/<run>/report.md + eval_curve.png).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
run_dir=$(heron train ppo --env CartPole-v1 --steps 300000 --seeds 4 --no-progress | tail -n 1)
heron eval "$run_dir" --episodes 20
heron runs show "$run_dir"
echo "report: $run_dir/report.md"
