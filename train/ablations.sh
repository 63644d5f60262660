#!/usr/bin/env bash
# The ablations of REPORT.md, on the cpu preset: five teachers trained on the synthetic data with the same budget
# and seed as the main model (runs/default, built by train/build_default.sh), each evaluated on the synthetic test
# split; then identity matching of the main teacher on the whole test split, clean and with augmented audio.
#
#   JOBS=2 nohup bash train/ablations.sh > runs/ablations.log 2>&1 &   # about 7 h on a 2-core CPU, in the background
#   ITERS=2500 EVAL_CLIPS=40 ONLY="no_velocity identity" bash train/ablations.sh
#   .venv/bin/python -m train.report                                 # then regenerate REPORT.md
#
# Every stage resumes: finished runs are skipped (a metrics.json newer than its teacher counts as finished),
# an interrupted teacher continues from its saved state. Outputs: runs/ablations/NAME/{teacher,metrics.json,table.md}.
#   no_contrastive      --set diffusion__identity_weight=0   (identity embeddings trained by the diffusion loss only)
#   no_identity         --single-identity                   (every clip is one speaker: no identity at all)
#   no_velocity         --set diffusion__velocity_weight=0   (no velocity term in the x0 loss)
#   no_emotion          --set model__emotion_head=false      (no emotion head: the emotion only through the audio)
#   facediffuser_style  --set diffusion__identity_weight=0 diffusion__identity_dropout=0
#                       (a per-speaker embedding looked up by index = one-hot speaker x a learned matrix, as
#                       FaceDiffuser), evaluated with ancestral DDPM over all 1024 steps (and DDIM-512)
#   identity            the main teacher: identity matching only, test split clean / with augmented audio
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"  # this script, wherever it was started from
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/synth}
MAIN=${MAIN:-runs/default}        # the main model (its teacher is matched in the identity stage)
OUT=${OUT:-runs/ablations}
ITERS=${ITERS:-22000}             # teacher iterations: the main model's (build_default.sh), for a like-for-like budget
EVAL_CLIPS=${EVAL_CLIPS:-40}      # as build_default.sh evaluates the main model
SEEDS=${SEEDS:-4}
ONLY=${ONLY:-"no_contrastive no_identity no_velocity no_emotion facediffuser_style identity"}
export HF_HUB_OFFLINE=1
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start ))s] $*"; }
wanted() { [[ " $ONLY " == *" $1 "* ]]; }
iterations() {  # iterations recorded in a checkpoint's config.json (0 when absent)
  [ -f "$1/config.json" ] || { echo 0; return; }
  $PY -c "import json,sys;print(json.load(open(sys.argv[1]))['meta'].get('iterations',0))" "$1/config.json"
}

if [ ! -f "$DATA/stats.json" ]; then
  stamp "synthetic data -> $DATA"
  $PY -m train.make_synthetic --out "$DATA" --speakers 10 --clips-per-speaker 150 --heldout-speakers 2 --takes 4 \
      --seed 0
fi
main_iters=$(iterations "$MAIN/teacher")
if [ "$main_iters" != "$ITERS" ] && [ -z "${ABLATION_CHILD:-}" ]; then
  stamp "note: the main teacher ($MAIN/teacher) has $main_iters iterations, the ablations get ITERS=$ITERS;" \
        "the report flags the budget difference"
fi

# JOBS=2: two groups of stages side by side, one thread each (on 2 cores about 1.6x the throughput of one job with
# two threads: 3.4 + 3.4 it/s against 4.2 it/s for the cpu-preset teacher)
if [ "${JOBS:-1}" = "2" ] && [ -z "${ABLATION_CHILD:-}" ]; then
  pids=()
  for group in "no_contrastive no_identity identity" "no_velocity no_emotion facediffuser_style"; do
    subset=""
    for name in $group; do wanted "$name" && subset="$subset $name"; done
    [ -n "$subset" ] || continue
    stamp "stages${subset} in parallel (one thread)"
    ABLATION_CHILD=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 ONLY="$subset" bash "$SELF" & pids+=($!)
  done
  status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
  stamp "done (status $status); regenerate the report with: $PY -m train.report"
  exit "$status"
fi

# ablation NAME "TRAIN FLAGS" "EVALUATE FLAGS" [refit]
# refit: the teacher's emotion head is refitted on prosody before the evaluation, as the main ladder's is
# (train/build_default.sh), so the rows compare training choices like for like
ablation() {
  local name=$1 train_flags=$2 eval_flags=$3 refit=${4:-} run="$OUT/$1"
  wanted "$name" || return 0
  if [ "$(iterations "$run/teacher")" -lt "$ITERS" ]; then
    stamp "$name: teacher ($ITERS iterations) -> $run   [train_teacher $train_flags]"
    # shellcheck disable=SC2086
    $PY -m train.train_teacher --data "$DATA" --preset cpu --out "$run" --iterations "$ITERS" --resume --quiet \
        $train_flags
  else
    stamp "$name: teacher already trained ($ITERS iterations)"
  fi
  local checkpoint="$run/teacher"
  if [ "$refit" = refit ]; then
    checkpoint="$run/teacher-prosody"
    if [ ! -f "$checkpoint/emotion_refit.json" ] || [ "$run/teacher/config.json" -nt "$checkpoint/emotion_refit.json" ]
    then
      stamp "$name: emotion head refit on prosody -> $checkpoint"
      rm -rf "$checkpoint"
      $PY -m train.fit_emotion_head --ladder "$run/teacher" --data "$DATA" --out "$checkpoint"
    fi
  fi
  if [ ! -f "$run/metrics.json" ] || [ "$checkpoint/config.json" -nt "$run/metrics.json" ]; then
    stamp "$name: evaluation -> $run/metrics.json   [evaluate $eval_flags]"
    # shellcheck disable=SC2086
    $PY -m train.evaluate --checkpoint "$checkpoint" --data "$DATA" --split test --max-clips "$EVAL_CLIPS" \
        --seeds "$SEEDS" $eval_flags --out "$run/metrics.json" --table "$run/table.md" --quiet
  else
    stamp "$name: already evaluated ($run/metrics.json)"
  fi
}

ablation no_contrastive "--set diffusion__identity_weight=0" "--steps 512" refit
ablation no_identity "--single-identity" "--steps 512 --no-identity-diversity" refit
ablation no_velocity "--set diffusion__velocity_weight=0" "--steps 512 --no-identity-diversity" refit
ablation no_emotion "--set model__emotion_head=false" "--steps 512"
ablation facediffuser_style "--set diffusion__identity_weight=0 diffusion__identity_dropout=0" \
    "--steps 512 --teacher-ddpm 1024 --no-identity-diversity" refit

# identity matching of the main teacher on the WHOLE test split (held-out sentences), clean and augmented
if wanted identity; then
  if [ ! -f "$MAIN/teacher/config.json" ]; then
    stamp "identity: skipped, $MAIN/teacher does not exist yet (run: bash train/build_default.sh)"
  else
    for variant in clean augmented; do
      dir="$OUT/identity-test"; flags=""
      if [ "$variant" = augmented ]; then dir="$OUT/identity-test-augmented"; flags="--augment-audio 0"; fi
      if [ ! -f "$dir/metrics.json" ] || [ "$MAIN/teacher/config.json" -nt "$dir/metrics.json" ]; then
        stamp "identity ($variant audio) -> $dir/metrics.json"
        # shellcheck disable=SC2086
        $PY -m train.evaluate --checkpoint "$MAIN/teacher" --data "$DATA" --split test --identity-only $flags \
            --out "$dir/metrics.json" --table "$dir/table.md" --quiet
      else
        stamp "identity ($variant audio): already evaluated ($dir/metrics.json)"
      fi
    done
  fi
fi
stamp "done; regenerate the report with: $PY -m train.report"
