#!/bin/bash
# A sharded evaluation as a Slurm job array (one shard per array task), then a merge job that runs
# when every task succeeded. From a cnnf checkout (npm ci done) on the cluster's shared filesystem:
#   jid=$(sbatch --parsable examples/sharded/slurm-array.sh)
#   sbatch --dependency=afterok:$jid --wrap "node bin/cnnf merge shards/shard-*.json -o results.json && node bin/cnnf report results.json --out report"
# `--shard auto` reads SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_COUNT (the
# array must be contiguous, e.g. 1-4). A requeued or resubmitted task continues from its --state.
#SBATCH --job-name=cnnf-eval
#SBATCH --array=1-4
#SBATCH --cpus-per-task=2
#SBATCH --mem=3G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --output=cnnf-eval-%A_%a.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
mkdir -p shards
node bin/cnnf eval \
  --model models/reference-cnn-adv.safetensors \
  --model models/reference-cnnf-adv.safetensors \
  --suite attacks/autoattack.json --test-subset stride:10 \
  --workers "${SLURM_CPUS_PER_TASK:-1}" \
  --shard auto --state "shards/state-${SLURM_ARRAY_TASK_ID}" \
  --json "shards/shard-${SLURM_ARRAY_TASK_ID}.json"
