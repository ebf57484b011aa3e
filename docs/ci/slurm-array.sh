#!/bin/bash
# Screen the models.yaml matrix as a Slurm job array, then merge (README, "Spreading a matrix over machines").
#
#   bash docs/ci/slurm-array.sh 3      # submits 3 shard tasks and a merge that starts when they have all ended
#
# Task SLURM_ARRAY_TASK_ID=K (1..N) runs --shard=K/N; the merge (afterany: it runs when a shard's screens failed too,
# and then exits 1 as a whole run would) reads every shard's folder. Run it from the folder holding models.yaml, on a
# filesystem every node sees (the cache takes file locks in it).
#SBATCH --job-name=quantscreen
#SBATCH --cpus-per-task=8
#SBATCH --time=06:00:00
#SBATCH --output=quantscreen-%A_%a.log
set -u
SCREEN_ARGS=(--models=models.yaml --cache-dir="${QUANTSCREEN_CACHE:-$PWD/.quantscreen-cache}")

if [ -z "${SLURM_JOB_ID:-}" ]; then  # on the login node: submit the array and the merge
  shards=${1:-3}
  array=$(sbatch --parsable --array=1-"$shards" --gres=gpu:1 "$0" shard) || exit
  sbatch --dependency=afterany:"$array" --job-name=quantscreen-merge "$0" merge
  exit
fi

case "$1" in
  shard)
    exec pytest --pyargs quantscreen.screens "${SCREEN_ARGS[@]}" \
      --shard="$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT" --output-dir="out/shard-$SLURM_ARRAY_TASK_ID" ;;
  merge)  # loads no model
    exec pytest --pyargs quantscreen.screens "${SCREEN_ARGS[@]}" --merge=out --output-dir=screen-results ;;
esac
