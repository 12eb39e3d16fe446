#!/usr/bin/env bash
# Install everything into ./.venv and run heron's main job end to end on Pendulum-v1:
#   make a small D4RL-style dataset suite -> inspect a dataset -> train IQL offline ->
#   fine-tune it online with WSRL's switch -> one report: the curve through the switch, the dip
#   and the recovery, the scores and the dataset card (runs/<run>/report.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HERON_DATASETS_DIR="${HERON_DATASETS_DIR:-$PWD/datasets}"

# 1. Data: SAC learns Pendulum, its snapshots collect random/medium/expert/replay datasets (~2 min).
if [ ! -f "$HERON_DATASETS_DIR/demo/manifest.json" ]; then
  heron data suite make demo --preset small --tasks pendulum --quiet
fi

# 2. The dataset card: returns, lengths, actions, coverage, TQ and SACo.
heron data inspect demo/pendulum-medium

# 3. Offline: IQL on the medium dataset (20k updates, 64x64 networks to stay quick on 2 cores).
iql_run=$(heron train iql --dataset demo/pendulum-medium --steps 20000 --no-progress \
  actor_hidden=64,64 critic_hidden=64,64 | tail -n 1)

# 4. Online: continue it in the env with WSRL's switch (no offline data kept, 1000 warm-up steps of
#    the pre-trained policy, 4 updates per env step), then write the report.
run_dir=$(heron finetune "$iql_run" --method wsrl --warmup-steps 1000 --online-steps 10000 \
  --eval-episodes 20 --no-progress | tail -n 1)
heron runs show "$run_dir"
echo "report: $run_dir/report.md"
