#!/usr/bin/env bash
# Reproduce checkpoints/default (and checkpoints/default-vertex) from nothing, on CPU:
#   synthetic data -> teacher -> progressive distillation -> emotion head refit on prosody -> evaluation ->
#   model cards -> checkpoints/.
# Every stage resumes: rerun the same command after an interruption and finished stages are skipped.
#
#   bash train/build_default.sh                  # or: make default-model
#   ITERS=6000 ROUND_ITERS=300 bash train/build_default.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/synth}
RUN=${RUN:-runs/default}
ITERS=${ITERS:-22000}             # teacher iterations (the cpu preset's schedule; ~80 min on an idle 2-core CPU)
ROUND_ITERS=${ROUND_ITERS:-400}   # distillation iterations per halving round down to 8, 4, 2, 1 steps
HIGH_ITERS=${HIGH_ITERS:-40}      # ... and for the rounds 256 .. 16, whose students start close to their teacher
CLIPS=${CLIPS:-150}               # synthetic clips per speaker
SPEAKERS=${SPEAKERS:-10}
EVAL_CLIPS=${EVAL_CLIPS:-40}
TEACHER_EVAL_CLIPS=${TEACHER_EVAL_CLIPS:-40}
BLENDSHAPE=${BLENDSHAPE:-1}       # build the blendshape model (BLENDSHAPE=0: the vertex model only)
VERTEX=${VERTEX:-1}               # also build the vertex model
export HF_HUB_OFFLINE=1
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start ))s] $*"; }

if [ ! -f "$DATA/stats.json" ]; then
  stamp "synthetic data -> $DATA"
  $PY -m train.make_synthetic --out "$DATA" --speakers "$SPEAKERS" --clips-per-speaker "$CLIPS" \
      --heldout-speakers 2 --takes 4 --seed 0
fi

# the emotion head, refitted on whole clips' prosody (pitch, melody, pace) for every rung; the rest is copied
refit() {  # ladder data out
  if [ ! -f "$3/emotion_refit.json" ]; then
    stamp "emotion head refit on prosody -> $3"
    rm -rf "$3"  # an interrupted refit starts over (one minute)
    $PY -m train.fit_emotion_head --ladder "$1" --data "$2" --out "$3"
  fi
}

if [ "$BLENDSHAPE" = "1" ]; then  # ---- the blendshape model: checkpoints/default ----
if [ ! -f "$RUN/teacher/config.json" ] || [ "$($PY -c "import json;print(json.load(open('$RUN/teacher/config.json'))['meta'].get('iterations',0))")" -lt "$ITERS" ]; then
  stamp "teacher ($ITERS iterations) -> $RUN"
  $PY -m train.train_teacher --data "$DATA" --preset cpu --out "$RUN" --iterations "$ITERS" --resume
fi

stamp "distillation 512 -> 1 -> $RUN/ladder"
$PY -m train.distill --teacher "$RUN/teacher" --data "$DATA" --out "$RUN/ladder" --target 1 \
    --iterations-per-round "$ROUND_ITERS" --high-rung-iterations "$HIGH_ITERS" --batch-size 12 --lr 5e-5

refit "$RUN/ladder" "$DATA" "$RUN/ladder-prosody"
LADDER="$RUN/ladder-prosody"

if [ ! -f "$RUN/metrics.json" ]; then
  # the 512-step teacher costs 64x a student per clip: evaluate it on fewer clips, without the per-identity pass,
  # then merge its row into the main table (speed-ups are recomputed against it)
  stamp "evaluation (teacher-512) -> $RUN/metrics_teacher512.json"
  $PY -m train.evaluate --checkpoint "$LADDER" --data "$DATA" --split test --max-clips "$TEACHER_EVAL_CLIPS" \
      --seeds 4 --steps 512 --no-identity-diversity --out "$RUN/metrics_teacher512.json" \
      --table "$RUN/table_teacher512.md" --quiet
  stamp "evaluation (students, teacher DDIM ablation) -> $RUN/metrics.json"
  $PY -m train.evaluate --checkpoint "$LADDER" --data "$DATA" --split test --max-clips "$EVAL_CLIPS" \
      --seeds 4 --steps 8 4 2 1 --teacher-ddim 8 4 2 1 --true-emotion 8 --merge "$RUN/metrics_teacher512.json" \
      --out "$RUN/metrics.json" --table "$RUN/table.md" --quiet
fi
# robustness, for the model cards: student-8 on voices it never heard, and on the test clips with the training
# augmentation applied (gain, spectral tilt, reverb, noise floor)
if [ ! -f "$RUN/metrics_heldout.json" ]; then
  stamp "evaluation (student-8, held-out voices) -> $RUN/metrics_heldout.json"
  $PY -m train.evaluate --checkpoint "$LADDER" --data "$DATA" --split test_heldout --steps 8 --seeds 2 \
      --max-clips 24 --no-identity-diversity --out "$RUN/metrics_heldout.json" --table "$RUN/table_heldout.md" --quiet
fi
if [ ! -f "$RUN/metrics_augmented.json" ]; then
  stamp "evaluation (student-8, augmented audio) -> $RUN/metrics_augmented.json"
  $PY -m train.evaluate --checkpoint "$LADDER" --data "$DATA" --split test --steps 8 --seeds 2 \
      --max-clips 24 --no-identity-diversity --augment-audio 0 --out "$RUN/metrics_augmented.json" \
      --table "$RUN/table_augmented.md" --quiet
fi

stamp "export -> checkpoints/default"
$PY -m train.export_default --run "$RUN" --ladder "$LADDER" --data "$DATA" --out checkpoints/default \
    --steps 512 8 4 2 1
fi  # BLENDSHAPE

if [ "$VERTEX" = "1" ]; then
  # vertex offsets of the procedural head: D = 3 x 8,226 per frame, so smaller batches, a low-rank motion projection
  # and a shorter schedule (a demo of the FLAME/VOCASET-style path, not a quality model)
  VDATA=${DATA}-vertex; VRUN=${RUN}-vertex
  if [ ! -f "$VDATA/meta.json" ]; then
    stamp "vertex clips (procedural head) -> $VDATA"
    $PY -m train.make_vertex_clips --src "$DATA" --out "$VDATA" --max-clips 240
  fi
  stamp "vertex teacher -> $VRUN"
  $PY -m train.train_teacher --data "$VDATA" --preset cpu --out "$VRUN" --iterations "${VITERS:-2400}" --resume \
      --batch-size 6 --set model__motion_rank=48 model__d_model=128 train__window_max=3.0 \
      train__log_every=20 train__eval_every=400 train__save_every=200
  $PY -m train.distill --teacher "$VRUN/teacher" --data "$VDATA" --out "$VRUN/ladder" --target 8 \
      --iterations-per-round "${VROUND_ITERS:-80}" --high-rung-iterations 20 --batch-size 6 --lr 5e-5
  refit "$VRUN/ladder" "$VDATA" "$VRUN/ladder-prosody"
  if [ ! -f "$VRUN/metrics.json" ]; then
    $PY -m train.evaluate --checkpoint "$VRUN/ladder-prosody" --data "$VDATA" --split test --max-clips 12 --seeds 2 \
        --steps 512 --no-identity-diversity --out "$VRUN/metrics_teacher512.json" --table "$VRUN/table_teacher512.md" --quiet
    $PY -m train.evaluate --checkpoint "$VRUN/ladder-prosody" --data "$VDATA" --split test --max-clips 12 --seeds 2 \
        --steps 8 --teacher-ddim 8 --merge "$VRUN/metrics_teacher512.json" --out "$VRUN/metrics.json" \
        --table "$VRUN/table.md" --quiet
  fi
  $PY -m train.export_default --run "$VRUN" --ladder "$VRUN/ladder-prosody" --data "$VDATA" \
      --out checkpoints/default-vertex --steps 512 8
fi
stamp "done"
