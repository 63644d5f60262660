"""Copy chosen rungs of a trained ladder into a shipped checkpoint dir (float16 weights), with ladder.json and a
MODEL_CARD.md per rung built from the run's log, data stats and evaluation metrics.

    python -m train.export_default --run runs/default --data data/synth --out checkpoints/default --steps 512 8 4 2 1
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from diffusiontalker.checkpoint import load_checkpoint, read_ladder, save_checkpoint, write_ladder
from diffusiontalker.config import Config
from train.evaluate import BASELINE, OTHER_TAKES


def _git_commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return "unknown"


def _training_summary(run: Path, meta: dict | None = None) -> str:
    """The teacher's training budget from the run's log; without one (a ladder refitted or re-exported after its
    run directory was cleaned up), the summary an earlier export recorded in the checkpoint's meta."""
    recorded = (meta or {}).get("training_summary", "not recorded")
    log = run / "log.jsonl"
    if not log.exists():
        return recorded
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    steps = [r for r in rows if "loss" in r]
    if not steps:
        return recorded
    first, last = steps[0], steps[-1]
    # each --resume restarts the log's clock: add up the segments
    seconds, segment, prev = 0.0, 0.0, -1.0
    for r in rows:
        e = r.get("elapsed_s", 0.0)
        if e < prev:
            seconds += segment
        segment = prev = e
    minutes = (seconds + segment) / 60
    rate = last["step"] / max(60 * minutes, 1e-9)
    return (f"{last['step']} iterations in {minutes:.0f} min of wall-clock on a 2-core CPU ({rate:.1f} iterations/s "
            f"on average, the CPU at times shared with other jobs); loss {first['loss']:.3f} -> "
            f"{last['loss']:.3f} (x0 {last.get('rec', float('nan')):.4f}, identity accuracy on the batch "
            f"{last.get('id_acc', float('nan')):.2f})")


def _distill_summary(run: Path, meta: dict | None = None) -> str:
    log = run / "ladder" / "distill_log.jsonl"
    if not log.exists():
        return (meta or {}).get("distill_summary", "not recorded")
    last: dict[int, int] = {}
    for line in log.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            last[r["round"]] = max(last.get(r["round"], 0), r["step"])
    return ", ".join(f"{n} steps: {it} iterations" for n, it in sorted(last.items(), reverse=True))


def _refit_summary(meta: dict | None) -> str:
    refit = (meta or {}).get("emotion_refit")
    if not refit:
        return ""
    copies = refit.get("augment_copies", 0)
    text = (f"\nThe emotion head was then refitted on prosody (`train/fit_emotion_head.py`): {refit['clips']} "
            f"whole training clips ({copies} augmented cop{'y' if copies == 1 else 'ies'} of each), "
            f"{refit['epochs']} full-batch epochs")
    if "val_acc" in refit:
        text += f"; validation accuracy {100 * refit['val_acc_before']:.0f}% -> {100 * refit['val_acc']:.0f}%"
    return text + "."


def _load_rows(path: Path) -> dict[str, dict]:
    return json.loads(path.read_text())["rows"] if path.exists() else {}


def _between(v, lo: float, hi: float) -> bool:
    return v is not None and lo <= v <= hi


def quality_bars(rows: dict[str, dict], heldout: dict[str, dict] | None = None,
                 augmented: dict[str, dict] | None = None) -> list[tuple[str, str, bool | None]]:
    """The project's quality bars for a blendshape ladder (issue 6), checked against evaluation rows.

    ``rows``: the main test-split rows (``metrics.json``); ``heldout`` / ``augmented``: rows of the same evaluation
    on unseen voices and on augmented audio. Returns (bar, measured, met) with met None when not measured.
    """
    teacher = next((r for n, r in rows.items() if re.fullmatch(r"teacher-\d+", n)), None)
    s8, base = rows.get("student-8"), rows.get(BASELINE)

    def get(row, key):
        v = (row or {}).get(key)
        return None if v is None else float(v)

    out: list[tuple[str, str, bool | None]] = []
    lip_s8, lip_t, lip_b = get(s8, "lip_error"), get(teacher, "lip_error"), get(base, "lip_error")
    if lip_s8 is not None and lip_t:
        out.append(("student-8 lip error <= 1.05 x teacher's", f"{lip_s8 / lip_t:.3f} x", lip_s8 <= 1.05 * lip_t))
    if lip_s8 is not None and lip_b:
        out.append(("student-8 lip error <= 0.25 x mean baseline's", f"{lip_s8 / lip_b:.2f} x",
                    lip_s8 <= 0.25 * lip_b))
    jaw = get(s8, "jaw_r")
    out.append(("student-8 jawOpen r >= 0.9", "—" if jaw is None else f"{jaw:.2f}",
                None if jaw is None else jaw >= 0.9))
    students = sorted((int(n.split("-")[1]) for n in rows if re.fullmatch(r"student-\d+", n)), reverse=True)
    ratios = {n: get(rows[f"student-{n}"], "mouth_std_ratio") for n in students}
    down_to_2 = [v for n, v in ratios.items() if n >= 2]
    if down_to_2:
        shown = ", ".join(f"{n}: {v:.2f}" for n, v in ratios.items() if v is not None)
        out.append(("mouth std ratio in [0.8, 1.2], students down to 2 (1 reported)", shown,
                    all(_between(v, 0.8, 1.2) for v in down_to_2)))
    top1 = get(s8, "identity_top1")
    out.append(("identity top-1 >= 95% (held-out sentences)", "—" if top1 is None else f"{100 * top1:.0f}%",
                None if top1 is None else top1 >= 0.95))
    for name, row in (("teacher", teacher), ("student-8", s8)):
        b = get(row, "blink_ratio")
        out.append((f"{name} blink rate 0.7-1.3 x the data's", "—" if b is None else f"{b:.2f} x",
                    None if b is None else _between(b, 0.7, 1.3)))
    spread = get(s8, "spread_ratio")
    out.append(("seed spread in blink/brow channels >= 1.5 x that in lip channels (student-8)",
                "—" if spread is None else f"{spread:.2f} x", None if spread is None else spread >= 1.5))
    for what, extra in (("held-out voices", heldout), ("augmented audio", augmented)):
        r = get((extra or {}).get("student-8"), "jaw_r")
        out.append((f"jawOpen r >= 0.6 on {what} (student-8)", "not measured" if r is None else f"{r:.2f}",
                    None if r is None else r >= 0.6))
    return out


def bars_section(run: Path) -> str:
    rows = _load_rows(run / "metrics.json")
    if not rows:
        return ""
    bars = quality_bars(rows, _load_rows(run / "metrics_heldout.json"), _load_rows(run / "metrics_augmented.json"))
    lines = ["| bar | measured | met? |", "|---|---:|---|"]
    lines += [f"| {bar} | {value} | {'—' if met is None else ('yes' if met else '**no**')} |"
              for bar, value, met in bars]
    s8 = rows.get("student-8", {})
    emotions = {k[len("lip_error_"):]: v for k, v in s8.items() if k.startswith("lip_error_") and v is not None}
    notes = []
    floor, base = rows.get(OTHER_TAKES, {}).get("lip_error"), rows.get(BASELINE, {}).get("lip_error")
    if floor is not None and base:
        notes.append(f"The data's own other takes, scored against take 0 like samples, reach lip error {floor:.3f} "
                     f"({floor / base:.2f} x the baseline): the floor for a model that samples the data's variation "
                     f"(gain, timing and expression differ between takes).")
    if emotions:
        notes.append("Student-8 lip error by the clips' emotion: " + ", ".join(
            f"{e} {v:.3f}" for e, v in sorted(emotions.items())) + ". The synthetic emotions move the mouth (smile, "
            "frown) and show in the voice only as pitch, pace and loudness (which the level normalisation removes), "
            "so an emotion the model does not hear costs lip error; `python -m train.probe_emotion --data "
            "data/synth` measures how much of it the audio reveals.")
    named = rows.get("student-8 (true emotion)", {}).get("lip_error")
    if named is not None and base:
        notes.append(f"Told each clip's true emotion by name, student-8 reaches lip error {named:.3f} "
                     f"({named / base:.3f} x the baseline).")
    if s8.get("emotion_acc") is not None:
        recalls = ", ".join(f"{k[len('emotion_recall_'):]} {100 * v:.0f}%" for k, v in sorted(s8.items())
                            if k.startswith("emotion_recall_") and v is not None)
        unseen = _load_rows(run / "metrics_heldout.json").get("student-8", {}).get("emotion_acc")
        heard = (f"; on voices it never heard, whose speaker the identity match can only guess, it names "
                 f"{100 * unseen:.0f}%" if unseen is not None else "")
        notes.append(f"The emotion head names {100 * s8['emotion_acc']:.0f}% of the test clips' emotions from the "
                     f"audio (recall: {recalls}){heard}. Choosing the emotion by name (`--emotion`, the app's "
                     f"Emotion menu) sidesteps its mistakes.")
    note = "".join(f"\n{n}\n" for n in notes)
    return "## Against the project's quality bars\n" + "\n".join(lines) + "\n" + note


def model_card(cfg: Config, steps: int, role: str, run: Path, data: Path, n_params: int, size_mb: float,
               meta: dict | None = None) -> str:
    m = cfg.model
    stats = json.loads((data / "stats.json").read_text()) if (data / "stats.json").exists() else {}
    table = (run / "table.md").read_text() if (run / "table.md").exists() else "_evaluation not run_\n"
    emotion_limit = ("- Emotions are the synthetic set's four; \"auto\" reads them from pitch and pace relative to "
                     "the matched speaker, which\n  real voices express differently: name the emotion when you know "
                     "it.\n" if m.has_emotion else "")
    vertex_note = ("- This vertex model is a small demonstration of the FLAME/VOCASET-style path (a short schedule "
                   "on a few hundred clips of\n  the procedural head): compare its rows with the baseline row above "
                   "before relying on it.\n" if m.kind == "vertex" else "")
    limits = emotion_limit + vertex_note
    context = ", the utterance's pooled audio statistics " if m.global_context else " "
    heard = ("the clip's prosody (log-f0 percentiles, melody, pace and dynamics measured on the waveform)"
             if m.emotion_features == "prosody" else "the pooled audio statistics")
    emotion = (f"\nAn emotion head ({', '.join(m.emotion_names)}) reads the emotion from {heard} "
               f"heard against the\nspeaker's identity (cross-entropy on the data's labels); its probabilities, or an "
               f"emotion chosen by name\n(`emotion=\"happy\"`, `--emotion happy`, the app's Emotion menu), join the "
               f"condition vector." if m.has_emotion else "")
    origin = " (the teacher)" if role == "teacher" else ", distilled progressively from the 512-step teacher"
    out_desc = (f"ARKit-52 blendshape weights (Apple order) at {m.fps} fps" if m.kind == "blendshape"
                else f"vertex offsets of the procedural head ({m.motion_dim // 3} vertices) at {m.fps} fps")
    return f"""# DiffusionTalker default model — {role} ({steps} DDIM steps)

## Intended use
Speech-driven facial animation for previews, prototyping and demos: speech in, {out_desc} out. Trained on
**synthetic** speech (espeak-ng voices), so expect it to follow the rhythm and the jaw/lip shapes of real speech
roughly, not production lip-sync. For production quality train on BEAT (blendshapes) or VOCASET (FLAME vertices)
with a HuBERT encoder (commands below).

## Training data
The project's own synthetic set: `python -m train.make_synthetic --out {data} --seed 0` (espeak-ng phoneme timings ->
visemes -> ARKit curves, {stats.get('clips', '?')} clips, {stats.get('hours', 0):.2f} h, 4 takes per utterance that
differ in blinks, brows and articulation). Licence of the data and of these weights: the project's own (Apache-2.0);
no third-party data or weights were used.

## Architecture and size
Audio encoder `{m.encoder}` (log-mel, 80 bins, 50 fps, level-normalised; {m.encoder_layers} conv layers) ->
band-limited transformer denoiser predicting x0 ({m.n_layers} layers, d_model {m.d_model}, {m.n_heads} heads,
±{m.attn_window} frames) with adaLN-Zero conditioning on the timestep{context}and one of {len(m.identity_names)} learned
identity embeddings ({', '.join(m.identity_names)}), trained with an InfoNCE loss against the audio.{emotion}
{n_params / 1e6:.2f} M parameters, {size_mb:.1f} MB on disk (float16). Cosine schedule, T = 1024; this rung
samples with {steps} deterministic DDIM steps{origin}.

## Training budget
{_training_summary(run, meta)}. Distillation: {_distill_summary(run, meta)}.{_refit_summary(meta)}
Reproduce everything with `bash train/build_default.sh` (commit {_git_commit()}).

## Metrics (synthetic test split; `python -m train.evaluate`)
{table}
{bars_section(run) if m.kind == "blendshape" else ""}
## Known limits
- Synthetic voices only: real recordings are a different distribution; jaw motion follows speech energy and
  phoneme classes, but fine lip shapes on real voices are approximate.
- Identities are the synthetic speakers above; "auto" picks the nearest of them for any voice.
{limits}- Train your own: `python -m train.prepare_beat --beat BEAT --out data/beat --speakers 2 4 6 8`, then
  `python -m train.train_teacher --data data/beat --preset paper --encoder-path /path/to/hubert-base --out runs/beat`,
  `python -m train.distill --teacher runs/beat/teacher --data data/beat --out runs/beat/ladder --target 8`,
  `python -m train.evaluate --checkpoint runs/beat/ladder --data data/beat`.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="the run directory (its log, metrics*.json and table.md)")
    p.add_argument("--ladder", help="the ladder to export (default: RUN/ladder)")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, nargs="+", default=[512, 8, 4, 2, 1])
    args = p.parse_args(argv)
    run, out = Path(args.run), Path(args.out)
    rungs = read_ladder(args.ladder or run / "ladder")
    teacher_steps = max(rungs)
    chosen = {}
    for steps in args.steps:
        if steps not in rungs:
            print(f"error: the ladder has no {steps}-step rung ({sorted(rungs)})", file=sys.stderr)
            return 2
        model, cfg, meta = load_checkpoint(rungs[steps])
        name = "teacher" if steps == teacher_steps else f"student-{steps}"
        role = "teacher" if steps == teacher_steps else f"student-{steps}"
        # the budget travels with the weights, so a later refit or re-export can still state it
        meta = meta | {"licence": "Apache-2.0 (project-generated data)",
                       "training_summary": _training_summary(run, meta), "distill_summary": _distill_summary(run, meta)}
        save_checkpoint(model, cfg, out / name, meta=meta, half=True, card="")
        size = (out / name / "model.safetensors").stat().st_size / 1e6
        card = model_card(cfg, steps, role, run, Path(args.data), model.num_parameters(), size, meta)
        (out / name / "MODEL_CARD.md").write_text(card)
        chosen[steps] = name
    write_ladder(out, chosen, teacher_steps=teacher_steps)
    (out / "MODEL_CARD.md").write_text((out / chosen[min(chosen, key=lambda s: abs(s - 8))] / "MODEL_CARD.md")
                                       .read_text())
    # the evaluation behind the cards travels with the weights (small JSON), so it outlives the run directory
    sources = [run / f"{name}.json" for name in ("metrics", "metrics_heldout", "metrics_augmented")]
    sources.append(Path(args.ladder or run / "ladder") / "emotion_refit.json")
    for src in sources:
        if src.exists():
            (out / src.name).write_text(src.read_text())
    print(f"exported {sorted(chosen, reverse=True)} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
