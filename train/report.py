"""Regenerate REPORT.md, the paper-style report, and its figures from metrics files only.

    python -m train.report [--runs runs] [--out REPORT.md] [--figures docs]

Reads ``RUNS/default/metrics.json`` (the main ladder, from ``train/build_default.sh``), ``RUNS/ablations/NAME/
metrics.json`` (from ``train/ablations.sh``) and the identity-matching runs, all written by ``train.evaluate``
({"rows": {name: {metric: value}}, "meta": {...}, "identity_confusion": ..., "style": ...}). Every number in the
report comes from one of these files, named under its table with the command that produced it; a section whose
files are missing says which command to run instead of failing. Figures are written as ``FIGURES/report_*.png``.
Nothing is trained or evaluated here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from diffusiontalker.errors import DiffusionTalkerError
from diffusiontalker.metrics import format_metric

PAPER_SPEEDUP_8 = 65.5  # the paper's speed-up of its 8-step student over its teacher (its hardware and encoder)
STUDENT_STEPS = (8, 4, 2, 1)
FIGURES = ("report_distillation_quality.png", "report_distillation_time.png", "report_identity_confusion.png",
           "report_style.png")
BASELINE = "baseline (channel mean)"  # the row name train.evaluate gives the per-channel-mean baseline
OTHER_TAKES = "data (other takes)"  # train.evaluate's row of the data's own takes 1.. scored against take 0
MAIN_COMMAND = "bash train/build_default.sh"
ABLATIONS_COMMAND = "bash train/ablations.sh"


@dataclass(frozen=True)
class Ablation:
    """One ablation run of ``train/ablations.sh``: a teacher trained with ``train`` flags, evaluated with ``evaluate``
    flags (both appended to the commands the script runs)."""

    name: str
    label: str
    train: str
    evaluate: str
    row: str = "teacher-512"  # the metrics row that stands for this configuration
    refit: bool = True  # its emotion head is refitted on prosody before the evaluation, as the main ladder's is

    def train_command(self, runs: str = "runs", iters: int = 2500) -> str:
        return (f"python -m train.train_teacher --data data/synth --preset cpu --out {runs}/ablations/{self.name} "
                f"--iterations {iters} --resume {self.train}")

    def evaluate_command(self, runs: str = "runs") -> str:
        run = f"{runs}/ablations/{self.name}"
        checkpoint = f"{run}/teacher-prosody" if self.refit else f"{run}/teacher"
        refit = (f"python -m train.fit_emotion_head --ladder {run}/teacher --data data/synth --out {checkpoint} && "
                 if self.refit else "")
        return (f"{refit}python -m train.evaluate --checkpoint {checkpoint} --data data/synth --split test "
                f"--max-clips 40 --seeds 4 {self.evaluate} --out {run}/metrics.json")


ABLATIONS: dict[str, Ablation] = {a.name: a for a in (
    Ablation("no_contrastive", "no contrastive loss", "--set diffusion__identity_weight=0", "--steps 512"),
    Ablation("no_identity", "no identity (one for all clips)", "--single-identity",
             "--steps 512 --no-identity-diversity"),
    Ablation("no_velocity", "no velocity loss", "--set diffusion__velocity_weight=0",
             "--steps 512 --no-identity-diversity"),
    Ablation("no_emotion", "no emotion head", "--set model__emotion_head=false", "--steps 512", refit=False),
    Ablation("facediffuser_style", "FaceDiffuser-style (one-hot speaker, DDPM-1024)",
             "--set diffusion__identity_weight=0 diffusion__identity_dropout=0",
             "--steps 512 --teacher-ddpm 1024 --no-identity-diversity", row="teacher-DDPM-1024"),
)}
IDENTITY_RUNS = {  # name under RUNS/ablations -> (description, extra evaluate flags)
    "identity-test": ("test split (held-out sentences)", ""),
    "identity-test-augmented": ("test split, augmented audio (gain, tilt, reverb, noise floor)", "--augment-audio 0"),
}


def identity_command(name: str, runs: str = "runs") -> str:
    parts = [f"python -m train.evaluate --checkpoint {runs}/default/teacher --data data/synth --split test "
             "--identity-only", IDENTITY_RUNS[name][1], f"--out {runs}/ablations/{name}/metrics.json"]
    return " ".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------------------------------
# reading
@dataclass
class Metrics:
    """One metrics file as the report uses it: where it is, what it holds, or why it could not be read."""

    path: Path
    doc: dict | None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.doc is not None

    @property
    def meta(self) -> dict:
        return (self.doc or {}).get("meta", {})

    @property
    def rows(self) -> dict[str, dict]:
        return (self.doc or {}).get("rows", {})

    def row(self, name: str) -> dict | None:
        return self.rows.get(name)

    @property
    def teacher_row(self) -> str:
        return f"teacher-{self.meta.get('teacher_steps', 512)}"

    def recipe(self) -> dict[str, object]:
        """The teacher's recorded settings: ``diffusion.*`` (loss weights, schedule) and ``model.*`` (network; absent
        from metrics files written before evaluate recorded it)."""
        out = {f"diffusion.{k}": v for k, v in self.meta.get("diffusion", {}).items() if k != "steps"}
        out.update({f"model.{k}": v for k, v in self.meta.get("model", {}).items()})
        return out

    def iterations(self) -> int | None:
        """Training iterations of the teacher that produced these metrics (from the evaluation's meta)."""
        ck = self.meta.get("checkpoints", {}).get(str(self.meta.get("teacher_steps")), {})
        return ck.get("iterations")


def load_metrics(path: str | os.PathLike) -> Metrics:
    """Read one metrics.json; a missing or malformed file gives a Metrics with ``doc=None`` and the reason."""
    path = Path(path)
    if not path.is_file():
        return Metrics(path, None, "missing")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return Metrics(path, None, f"unreadable ({e})")
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), dict):
        return Metrics(path, None, "not a train.evaluate metrics file (no \"rows\")")
    return Metrics(path, doc)


@dataclass
class Runs:
    """All metrics files the report reads."""

    root: Path
    main: Metrics
    ablations: dict[str, Metrics]
    identity: dict[str, Metrics]

    @classmethod
    def load(cls, root: str | os.PathLike) -> Runs:
        root = Path(root)
        return cls(root, load_metrics(root / "default" / "metrics.json"),
                   {n: load_metrics(root / "ablations" / n / "metrics.json") for n in ABLATIONS},
                   {n: load_metrics(root / "ablations" / n / "metrics.json") for n in IDENTITY_RUNS})


# ---------------------------------------------------------------------------------------------------------------
# formatting
def _num(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def fmt(v, style: str = "num") -> str:
    """A metric for a table cell: '—' for missing / NaN; styles num, pct (0.93 -> 93%), x (speed-up), int, signed
    (a relative change, +6.3%)."""
    x = _num(v)
    if x is not None and style == "signed":
        return f"{x:+.1%}"
    if x is not None and style == "x" and x < 1:
        return f"×{x:.2f}"
    return format_metric(x, style)


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1) -> str:
    """A markdown table: the first ``text_columns`` columns left-aligned, the rest (numbers) right-aligned."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(("---" if i < text_columns else "---:") for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def not_run(what: str, command: str) -> str:
    return f"_Not run yet — run `{command}`{' (' + what + ')' if what else ''}._\n"


def source_line(m: Metrics, fallback_command: str) -> str:
    """'Source: `path` — `command` (commit, date, clips)': where the numbers above come from."""
    meta = m.meta
    command = meta.get("command") or fallback_command
    commit = (meta.get("git_commit") or "unknown")[:10]
    bits = [f"commit {commit}", str(meta.get("date", "date unknown"))]
    if meta.get("clips") is not None:
        seeds = "" if meta.get("identity_only") else f", {meta.get('seeds')} seeds"
        augmented = ", augmented audio" if meta.get("augment_audio") is not None else ""
        bits.append(f"{meta['clips']} clips of `{meta.get('data')}` ({meta.get('split')}{augmented}){seeds}")
    if m.iterations() is not None:
        bits.append(f"teacher trained {m.iterations()} iterations")
    return f"Source: `{m.path}` — `{command}` ({'; '.join(bits)}).\n"


def _relative(a, b) -> float | None:
    a, b = _num(a), _num(b)
    return a / b - 1 if a is not None and b not in (None, 0.0) else None


def _lip_key(m: Metrics) -> tuple[str, str]:
    return ("lve", "LVE") if m.meta.get("kind") == "vertex" else ("lip_error", "lip error")


def _chance(m: Metrics, k: int) -> float | None:
    n = len(m.meta.get("identities") or [])
    return min(k, n) / n if n else None


# ---------------------------------------------------------------------------------------------------------------
# figures (matplotlib, Agg backend)
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _steps_series(m: Metrics, key: str) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(teacher DDIM points, student points) as (steps, value), both including the teacher itself."""
    teacher_steps = int(m.meta.get("teacher_steps", 512))
    teacher = _num((m.row(m.teacher_row) or {}).get(key))
    ddim, student = [], []
    for n in STUDENT_STEPS:
        v = _num((m.row(f"teacher-DDIM-{n}") or {}).get(key))
        if v is not None:
            ddim.append((n, v))
        v = _num((m.row(f"student-{n}") or {}).get(key))
        if v is not None:
            student.append((n, v))
    if teacher is not None:
        ddim.append((teacher_steps, teacher))
        student.append((teacher_steps, teacher))
    return sorted(ddim), sorted(student)


def _steps_axis(ax, points: list[tuple[int, float]]) -> None:
    """A log2 x axis labelled with the step counts that occur."""
    ax.set_xscale("log", base=2)
    ticks = sorted({n for n, _ in points})
    if ticks:
        ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.set_xlabel("sampling steps N")


def plot_distillation(m: Metrics, out_dir: Path) -> list[Path]:
    """Quality-vs-steps (lip error, FDD) and time-vs-steps figures: teacher DDIM at N vs student at N."""
    plt = _pyplot()
    key, label = _lip_key(m)
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, (k, lab) in zip(axes, [(key, f"{label} ↓"), ("fdd", "FDD (GT − pred, → 0)")]):
        ddim, student = _steps_series(m, k)
        if ddim:
            ax.plot(*zip(*ddim), "o--", label="teacher, plain DDIM at N steps")
        if student:
            ax.plot(*zip(*student), "s-", label="distilled student at N steps")
        _steps_axis(ax, ddim + student)
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Quality vs steps (synthetic test split)", fontsize=10)
    fig.tight_layout()
    path = out_dir / FIGURES[0]
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)

    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    ddim, student = _steps_series(m, "s_per_s_audio")
    if ddim:
        ax.plot(*zip(*ddim), "o--", label="teacher, plain DDIM")
    if student:
        ax.plot(*zip(*student), "s-", label="distilled student")
    _steps_axis(ax, ddim + student)
    ax.set_yscale("log")
    ax.set_ylabel("seconds per second of audio ↓")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title(f"Time vs steps ({m.meta.get('device', 'cpu')}, {m.meta.get('torch_threads', '?')} threads)",
                 fontsize=10)
    fig.tight_layout()
    path = out_dir / FIGURES[1]
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    return written


def plot_confusion(confusion: dict, title: str, out_dir: Path) -> Path:
    """Row-normalised identity confusion matrix (rows: true speaker, columns: best match), counts annotated."""
    import numpy as np

    plt = _pyplot()
    names = list(confusion["names"])
    counts = np.asarray(confusion["matrix"], dtype=np.float64)  # (K, K)
    frac = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    size = 2.5 + 0.45 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("matched identity (top-1)")
    ax.set_ylabel("true speaker")
    for i in range(len(names)):
        for j in range(len(names)):
            if counts[i, j]:
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the speaker's clips")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = out_dir / FIGURES[2]
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_style(variants: list[tuple[str, dict]], out_dir: Path) -> Path | None:
    """Per-speaker style level, generated (y) vs ground truth (x), one marker per variant, one panel per stat."""
    stats = [s for s in ("smile", "brow") if any(s in v for _, t in variants for v in t.values())]
    if not stats:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(stats), figsize=(4.4 * len(stats), 4), squeeze=False)
    markers = "os^Dvx"
    for ax, stat in zip(axes[0], stats):
        lo, hi = math.inf, -math.inf
        for (label, table), mk in zip(variants, markers):
            pts = [(v[stat]["gt"], v[stat]["generated"]) for v in table.values() if stat in v]
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, marker=mk, label=label, alpha=0.8)
            lo, hi = min(lo, *xs, *ys), max(hi, *xs, *ys)
        if math.isfinite(lo):
            pad = 0.05 * (hi - lo or 1.0)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", lw=1, ls=":")
        ax.set_xlabel(f"ground-truth mean {stat} level per speaker")
        ax.set_ylabel(f"generated mean {stat} level")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Style match per speaker (on the diagonal = the speaker's own style)", fontsize=10)
    fig.tight_layout()
    path = out_dir / FIGURES[3]
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------------
# sections
def _ablated_keys(ablation: Ablation) -> set[str]:
    """The recipe keys an ablation changes on purpose (its ``--set section__key=value`` flags)."""
    return {tok.split("=")[0].replace("__", ".", 1) for tok in ablation.train.split() if "__" in tok and "=" in tok}


def _recipe_differences(main: Metrics, other: Metrics, ablation: Ablation) -> list[str]:
    """Settings recorded for both runs that differ, other than the ones the ablation changes on purpose."""
    a, b = main.recipe(), other.recipe()
    skip = _ablated_keys(ablation)
    return [f"{k.split('.', 1)[1]} {b[k]} (main {a[k]})" for k in sorted(set(a) & set(b))
            if k not in skip and a[k] != b[k]]


def _budget_note(runs: Runs, names: Sequence[str]) -> str:
    """Say when an ablation's teacher did not share the main teacher's budget or recipe (beyond what it ablates)."""
    main_it = runs.main.iterations()
    notes = []
    for n in names:
        m = runs.ablations[n]
        if not m.ok:
            continue
        bits = []
        it = m.iterations()
        if it is not None and main_it is not None and it != main_it:
            bits.append(f"{it} iterations (main {main_it})")
        bits += _recipe_differences(runs.main, m, ABLATIONS[n])
        if bits:
            notes.append(f"{n}: " + ", ".join(bits))
    if not notes:
        return ""
    return (f"\n**Not like-for-like**: these ablation teachers were trained with another budget or recipe than the "
            f"main teacher — {'; '.join(notes)}. Compare them with each other; against the main rows the gap mixes "
            f"the ablated part with these differences until `{ABLATIONS_COMMAND}` is re-run with the main recipe.\n")


def section_main(runs: Runs, rel: str) -> str:
    m, fd = runs.main, runs.ablations["facediffuser_style"]
    out = ["## 1. Main table\n",
           "The synthetic test split (held-out sentences of the 10 training speakers), laid out like the paper's "
           "comparison. Each sample is conditioned on the clip's true speaker by name. Diversity: mean pairwise "
           "distance between the seeded samples of one clip; blink ratio: the samples' blinks per minute over the "
           "data's (the stochastic motion a model that averages loses); id top-1: the audio → identity head's matching "
           "accuracy; s / s audio: wall-clock seconds of generation per second of audio per sample; speed-up: "
           "over the 512-step teacher measured in the same run.\n"]
    if not m.ok:
        out.append(not_run(f"`{m.path}` is {m.problem}", MAIN_COMMAND))
        return "\n".join(out)
    key, label = _lip_key(m)
    header = ["model", "steps", f"{label} ↓", "MVE ↓", "FDD (→0)", "diversity ↑", "blink ratio (→1)", "id top-1 ↑",
              "s / s audio ↓", "speed-up ↑"]
    cols = [("steps", "int"), (key, "num"), ("mve", "num"), ("fdd", "num"), ("diversity_seeds", "num"),
            ("blink_ratio", "num"), ("identity_top1", "pct"), ("s_per_s_audio", "num"), ("speedup", "x")]
    table = []
    names = [m.teacher_row] + [f"student-{n}" for n in STUDENT_STEPS] + [BASELINE]
    for name in names:
        row = m.row(name)
        if row is None:
            continue
        cells = [fmt(row.get(k), s) if not (k == "steps" and name == BASELINE) else "—" for k, s in cols]
        table.append([name] + cells)
    fd_row = fd.row(ABLATIONS["facediffuser_style"].row) if fd.ok else None
    if fd_row is not None:
        table.append(["FaceDiffuser-style¹"] + [fmt(fd_row.get(k), s) if k != "identity_top1" else "—"
                                                 for k, s in cols])
    out.append(md_table(header, table))
    out.append(source_line(m, MAIN_COMMAND))
    if fd_row is not None:
        out.append(source_line(fd, ABLATIONS["facediffuser_style"].evaluate_command(rel)))
        out.append("¹ A teacher trained on the same data and budget with a per-speaker embedding looked up by index "
                   "(identity_weight=0, identity_dropout=0: a one-hot speaker vector times a learned matrix, as "
                   "FaceDiffuser conditions; ours stays unit-normalised) and sampled with ancestral DDPM over all "
                   "1024 training steps. Its speed-up is over its own DDIM-512 sampling in the same run. It has no "
                   "audio → identity matching (FaceDiffuser has none; here the head is never trained without the "
                   "contrastive loss — its chance-level accuracy is in section 3).\n")
        out.append(_budget_note(runs, ["facediffuser_style"]))
    else:
        out.append(f"FaceDiffuser-style row: {not_run('', f'ONLY=facediffuser_style {ABLATIONS_COMMAND}').strip()}\n")
    s8 = m.row("student-8")
    if s8 is not None and _num(s8.get("speedup")) is not None:
        out.append(f"For scale: the paper reports ×{PAPER_SPEEDUP_8} for its 8-step student (its GPU, its HuBERT "
                   f"encoder and network); here the 8-step student is {fmt(s8.get('speedup'), 'x')} on "
                   f"{m.meta.get('device', 'cpu')} ({m.meta.get('torch_threads', '?')} threads). The ratio depends "
                   f"on the hardware and on how much of the time is the fixed cost of encoding the audio once, so "
                   f"the two are not directly comparable.\n")
    return "\n".join(out)


def section_distillation(runs: Runs, figures: dict[str, Path], fig_rel: str) -> str:
    m = runs.main
    out = ["## 2. Ablation — distillation\n",
           "What distillation buys over simply taking fewer steps: the teacher sampled with plain DDIM at N steps "
           "(no distillation) vs the progressively distilled student at N steps, same seeds, same clips.\n"]
    if not m.ok:
        out.append(not_run(f"`{m.path}` is {m.problem}", MAIN_COMMAND))
        return "\n".join(out)
    key, label = _lip_key(m)
    header = ["N", f"teacher DDIM-N {label}", f"student-N {label}", "student vs DDIM", "teacher DDIM-N FDD",
              "student-N FDD", "DDIM-N mouth std ratio", "student-N mouth std ratio", "DDIM-N s / s",
              "student-N s / s"]
    table = []
    for n in STUDENT_STEPS:
        d, s = m.row(f"teacher-DDIM-{n}") or {}, m.row(f"student-{n}") or {}
        if not d and not s:
            continue
        table.append([str(n), fmt(d.get(key)), fmt(s.get(key)), fmt(_relative(s.get(key), d.get(key)), "signed"),
                      fmt(d.get("fdd")), fmt(s.get("fdd")), fmt(d.get("mouth_std_ratio")),
                      fmt(s.get("mouth_std_ratio")), fmt(d.get("s_per_s_audio")), fmt(s.get("s_per_s_audio"))])
    t = m.row(m.teacher_row) or {}
    if table:
        out.append(md_table(header, table))
        out.append(f"Reference: {m.teacher_row} {label} {fmt(t.get(key))}, FDD {fmt(t.get('fdd'))}, mouth std "
                   f"ratio {fmt(t.get('mouth_std_ratio'))}, {fmt(t.get('s_per_s_audio'))} s / s audio. "
                   f"'student vs DDIM': relative {label} of the student against plain DDIM at the same N "
                   f"(negative = distillation helps).\n")
    else:
        out.append(not_run("the metrics have no teacher-DDIM-N or student-N rows", MAIN_COMMAND))
    out.append(source_line(m, MAIN_COMMAND))
    if FIGURES[0] in figures:
        out.append(f"![quality vs steps]({fig_rel}/{FIGURES[0]})\n")
    if FIGURES[1] in figures:
        out.append(f"![time vs steps]({fig_rel}/{FIGURES[1]})\n")
    return "\n".join(out)


def section_personalisation(runs: Runs, figures: dict[str, Path], fig_rel: str, rel: str) -> str:
    out = ["## 3. Ablation — personalisation\n",
           "Contrastive identity embeddings (the method) vs the same embeddings trained by the diffusion loss alone "
           "(identity_weight=0) vs no identity at all (every clip one speaker). Identity top-1/top-3: the audio → "
           "identity head's matching accuracy. Style match: per speaker, the mean smile / brow level of the "
           "generated motion against the speaker's ground truth (err: mean |gap| over speakers, ↓; r: Pearson "
           "correlation across speakers, ↑, i.e. whether the model reproduces the differences between speakers).\n"]
    variants: list[tuple[str, Metrics, str, str]] = []  # label, metrics, row, fallback command
    if runs.main.ok:
        variants.append(("contrastive (main)", runs.main, runs.main.teacher_row, MAIN_COMMAND))
    for name in ("no_contrastive", "no_identity", "facediffuser_style"):
        a = runs.ablations[name]
        if a.ok:
            variants.append((ABLATIONS[name].label, a, "teacher-512", ABLATIONS[name].evaluate_command(rel)))
    if not variants:
        out.append(not_run("", f"{MAIN_COMMAND}; {ABLATIONS_COMMAND}"))
        return "\n".join(out)
    key, label = _lip_key(variants[0][1])
    header = ["variant", "id top-1 ↑", "id top-3 ↑", f"{label} ↓", "smile err ↓", "smile r ↑", "brow err ↓",
              "brow r ↑", "diversity across identities"]
    table, style_tables = [], []
    for vlabel, m, row_name, _ in variants:
        row = m.row(row_name) or {}
        table.append([vlabel, fmt(row.get("identity_top1"), "pct"), fmt(row.get("identity_top3"), "pct"),
                      fmt(row.get(key)), fmt(row.get("style_smile_err")), fmt(row.get("style_smile_r")),
                      fmt(row.get("style_brow_err")), fmt(row.get("style_brow_r")),
                      fmt(row.get("diversity_identities"))])
        style = (m.doc or {}).get("style", {}).get(row_name)
        if style:
            style_tables.append((vlabel, style))
    out.append(md_table(header, table))
    ref = variants[0][1]
    out.append(f"Chance level: top-1 {fmt(_chance(ref, 1), 'pct')}, top-3 {fmt(_chance(ref, 3), 'pct')}. With "
               f"identity_weight=0 "
               f"the audio → identity head receives no gradient at all, so 'no contrastive loss' (and the "
               f"FaceDiffuser-style row) match identities with an untrained head; with one identity there is "
               f"nothing to match ('—'). Rows are the 512-step teachers (for FaceDiffuser-style: its DDIM-512 "
               f"row, to compare the conditioning alone); every clip is generated with its TRUE speaker's identity, "
               f"so style match measures the conditioning, not the matching.\n")
    for _, m, _, fallback in variants:
        out.append(source_line(m, fallback))
    missing = [n for n in ("no_contrastive", "no_identity") if not runs.ablations[n].ok]
    if missing:
        command = f'ONLY="{" ".join(missing)}" {ABLATIONS_COMMAND}'
        out.append(f"Missing: {', '.join(missing)} — {not_run('', command).strip()}\n")
    if not runs.main.ok:
        out.append(f"Missing: the main model — {not_run('', MAIN_COMMAND).strip()}\n")
    out.append(_budget_note(runs, ["no_contrastive", "no_identity", "facediffuser_style"]))
    if FIGURES[3] in figures:
        out.append(f"![style match per speaker]({fig_rel}/{FIGURES[3]})\n")
    return "\n".join(out)


def section_losses(runs: Runs, rel: str) -> str:
    out = ["## 4. Ablation — losses\n",
           "The velocity (frame-difference) term of the x0 loss on (the method) vs off (velocity_weight=0). "
           "FDD: upper-face dynamics deviation, GT − prediction (→ 0); jitter ratio: mean acceleration of the "
           "samples over that of the ground truth (1 = as smooth as the data, > 1 = shakier).\n"]
    m, nv = runs.main, runs.ablations["no_velocity"]
    if not m.ok and not nv.ok:
        out.append(not_run("", f"{MAIN_COMMAND}; ONLY=no_velocity {ABLATIONS_COMMAND}"))
        return "\n".join(out)
    ref = m if m.ok else nv
    key, label = _lip_key(ref)
    header = ["variant", "FDD (→0)", "jitter ratio (→1)", "blink ratio (→1)", f"{label} ↓", "MVE ↓",
              "mouth std ratio (→1)"]
    table = []
    for vlabel, mm in (("velocity on (main)", m), ("velocity off", nv)):
        if not mm.ok:
            continue
        row = mm.row(mm.teacher_row if mm is m else "teacher-512") or {}
        table.append([vlabel, fmt(row.get("fdd")), fmt(row.get("jitter_ratio")), fmt(row.get("blink_ratio")),
                      fmt(row.get(key)),
                      fmt(row.get("mve")), fmt(row.get("mouth_std_ratio"))])
    out.append(md_table(header, table))
    out.extend(_pair_sources(runs, "no_velocity", rel, "Velocity on", "Velocity off"))
    return "\n".join(out)


def _pair_sources(runs: Runs, name: str, rel: str, main_label: str, ablation_label: str) -> list[str]:
    """Where the main run's and ablation ``name``'s numbers come from (or the command that makes a missing one),
    and the note when the two teachers were not trained alike."""
    m, a = runs.main, runs.ablations[name]
    main = source_line(m, MAIN_COMMAND) if m.ok else f"{main_label}: {not_run('', MAIN_COMMAND).strip()}\n"
    other = (source_line(a, ABLATIONS[name].evaluate_command(rel)) if a.ok else
             f"{ablation_label}: {not_run('', f'ONLY={name} {ABLATIONS_COMMAND}').strip()}\n")
    return [main, other, _budget_note(runs, [name])]


def _emotion_columns(rows: Sequence[dict]) -> list[str]:
    """The emotion labels that have a per-emotion lip error in any of ``rows`` (neutral first)."""
    found = sorted({k[len("lip_error_"):] for r in rows for k in r if k.startswith("lip_error_")})
    return sorted(found, key=lambda e: (e != "neutral", e))


def section_emotion(runs: Runs, rel: str) -> str:
    out = ["## 5. Ablation — emotion\n",
           "Emotion as a second personalisation axis (this project's addition to the method, where the data is "
           "labelled): a head reads the emotion from the pooled audio statistics heard against the speaker's "
           "identity, and its probabilities — or a named emotion — join the condition vector; vs the same recipe "
           "without it (`no_emotion`). Lip error split by the clips' emotion label; emotion acc: how often the head "
           "names the clip's emotion from the audio. \"true emotion\" rows: the model told each clip's emotion by "
           "name (what a user who names it gets). The data's other takes, scored against take 0 like samples, are "
           "the floor for a model that samples the data's take-to-take variation.\n"]
    m, ne = runs.main, runs.ablations["no_emotion"]
    variants: list[tuple[str, dict]] = []
    if m.ok:
        for name in (m.teacher_row, "student-8", "student-8 (true emotion)", f"{m.teacher_row} (true emotion)"):
            if m.row(name):
                variants.append((f"main: {name}", m.row(name)))
    if ne.ok and ne.row("teacher-512"):
        variants.append(("teacher-512, no emotion head", ne.row("teacher-512")))
    if m.ok:
        for name in (OTHER_TAKES, BASELINE):
            if m.row(name):
                variants.append((name, m.row(name)))
    if not variants:
        out.append(not_run("", f"{MAIN_COMMAND}; ONLY=no_emotion {ABLATIONS_COMMAND}"))
        return "\n".join(out)
    emotions = _emotion_columns([r for _, r in variants])
    header = ["variant", "lip error ↓", *[f"{e} ↓" for e in emotions], "emotion acc ↑", "blink ratio (→1)"]
    table = [[label, fmt(r.get("lip_error")), *[fmt(r.get(f"lip_error_{e}")) for e in emotions],
              fmt(r.get("emotion_acc"), "pct"), fmt(r.get("blink_ratio"))] for label, r in variants]
    out.append(md_table(header, table))
    out.extend(_pair_sources(runs, "no_emotion", rel, "Emotion head (main)", "No emotion head"))
    return "\n".join(out)


def _identity_confusion(runs: Runs) -> tuple[dict | None, str]:
    """The confusion matrix to draw: the whole-test-split run if present, else the main evaluation's teacher."""
    for m, what in ((runs.identity["identity-test"], "whole test split"), (runs.main, "main evaluation")):
        if m.ok:
            conf = (m.doc or {}).get("identity_confusion", {}).get(m.teacher_row)
            if conf:
                return conf, f"{m.teacher_row}, {what} ({m.meta.get('clips')} clips), `{m.path}`"
    return None, ""


def section_identity(runs: Runs, figures: dict[str, Path], fig_rel: str, rel: str) -> str:
    out = ["## 6. Identity matching\n",
           "The main teacher's audio → identity head, top-k accuracy over the 10 training speakers on sentences "
           "it never saw (the test split), on clean audio and on the same audio passed through the training "
           "augmentation (random gain ±20 dB, spectral tilt, reverb, noise floor at 15–50 dB SNR; seed 0). "
           "The two held-out speakers (split test_heldout) have no identity to match and are not counted.\n"]
    header = ["audio", "clips", "id top-1 ↑", "id top-3 ↑"]
    table, sources = [], []
    for name, (what, _) in IDENTITY_RUNS.items():
        m = runs.identity[name]
        row = m.row(m.teacher_row) if m.ok else None
        if row is None:
            table.append([what, "—", "—", "—"])
            sources.append(f"{what}: {not_run('', f'ONLY=identity {ABLATIONS_COMMAND}').strip()}\n")
            continue
        table.append([what, fmt(row.get("identity_clips"), "int"), fmt(row.get("identity_top1"), "pct"),
                      fmt(row.get("identity_top3"), "pct")])
        sources.append(source_line(m, identity_command(name, rel)))
    if runs.main.ok:
        row = runs.main.row(runs.main.teacher_row) or {}
        if _num(row.get("identity_top1")) is not None:
            table.append([f"test split, main evaluation subset ({runs.main.teacher_row})",
                          fmt(row.get("identity_clips"), "int"), fmt(row.get("identity_top1"), "pct"),
                          fmt(row.get("identity_top3"), "pct")])
            sources.append(source_line(runs.main, MAIN_COMMAND))
    out.append(md_table(header, table))
    chance = _chance(runs.main, 1) if runs.main.ok else None
    if chance is not None:
        out.append(f"Chance: top-1 {fmt(chance, 'pct')}, top-3 {fmt(_chance(runs.main, 3), 'pct')}.\n")
    out.extend(sources)
    conf, where = _identity_confusion(runs)
    if FIGURES[2] in figures:
        out.append(f"Confusion matrix ({where}); rows: true speaker, columns: top-1 match.\n")
        out.append(f"![identity confusion matrix]({fig_rel}/{FIGURES[2]})\n")
    elif conf is None:
        out.append(f"Confusion matrix: {not_run('', f'ONLY=identity {ABLATIONS_COMMAND}').strip()}\n")
    return "\n".join(out)


def training_time(log: str | os.PathLike) -> tuple[float, int, bool] | None:
    """(hours, last step, finished) of a training run from its JSONL log (``elapsed_s`` restarts at each resume:
    the segments are summed; finished: a ``"event": "done"`` record); None without a log."""
    path = Path(log)
    if not path.is_file():
        return None
    total = seg = 0.0
    step, done = 0, False
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        e = _num(rec.get("elapsed_s"))
        if e is None:
            continue
        if e < seg:  # a new process (resume): close the previous segment
            total += seg
        seg = e
        step = max(step, int(rec.get("step", 0) or 0))
        done = done or rec.get("event") == "done"
    return (total + seg) / 3600, step, done


REAL_DATA_COMMANDS = """\
# BEAT (ARKit blendshapes; FaceDiffuser's speakers and 80/10/10 split, seed 42)
python -m train.prepare_beat --beat /data/beat_english --out data/beat
python -m train.train_teacher --data data/beat --preset paper --encoder-path /models/hubert-base-ls960 \\
    --out runs/beat
#   several GPUs: torchrun --nproc_per_node=4 -m train.train_teacher --data data/beat --preset paper ...
python -m train.distill --teacher runs/beat/teacher --data data/beat --out runs/beat/ladder --target 8
python -m train.evaluate --checkpoint runs/beat/ladder --data data/beat --split test --seeds 4 \\
    --steps 512 8 --teacher-ddim 8 --out runs/beat/metrics.json --table runs/beat/table.md

# VOCASET (FLAME vertices; 8 train / 2 val / 2 test subjects; lip and upper-face index files are your own)
python -m train.prepare_vocaset --vocaset /data/vocaset --out data/vocaset \\
    --lip-indices flame_lips.txt --upper-face-indices flame_upper_face.txt
python -m train.train_teacher --data data/vocaset --preset paper --encoder-path /models/hubert-base-ls960 \\
    --out runs/vocaset
python -m train.distill --teacher runs/vocaset/teacher --data data/vocaset --out runs/vocaset/ladder --target 8
python -m train.evaluate --checkpoint runs/vocaset/ladder --data data/vocaset --split test --seeds 4 \\
    --steps 512 8 --teacher-ddim 8 --lip-idx data/vocaset/lip_vertices.txt \\
    --upper-idx data/vocaset/upper_face_vertices.txt --out runs/vocaset/metrics.json --table runs/vocaset/table.md
"""


def section_real_data(runs: Runs) -> str:
    estimates = [
        ["prepare BEAT (4 speakers) / VOCASET", "any CPU", "minutes"],
        ["teacher, paper preset (HuBERT-base fine-tuned above its CNN, 8-layer d=512 denoiser, 100k iterations, "
         "batch 32)", "one A100/H100-class GPU", "roughly 4–10 h; about a quarter of that on 4 GPUs"],
        ["progressive distillation 512 → 8 (6 rounds × 5,000 iterations, two teacher passes per step)", "one GPU",
         "roughly 2–5 h (`train.distill` runs on the GPU when one is visible, or with `--device cuda`)"],
        ["evaluation (teacher-512 and student-8 over the test split)", "one GPU", "under an hour"],
    ]
    measured = []
    teacher = training_time(runs.root / "default" / "log.jsonl")
    if teacher is not None:
        hours, step, done = teacher
        measured.append(f"the main teacher's {step} iterations took {hours:.1f} h" if done else
                        f"the main teacher is still training ({step} iterations in {hours:.1f} h so far)")
        measured[-1] += f" (`{runs.root / 'default' / 'log.jsonl'}`)"
    distill = training_time(runs.root / "default" / "ladder" / "distill_log.jsonl")
    if distill is not None:
        measured.append(f"the distillation rounds logged so far took {distill[0]:.1f} h "
                        f"(`{runs.root / 'default' / 'ladder' / 'distill_log.jsonl'}`)")
    cpu = ("Measured here for comparison, cpu preset on the synthetic set (1.7 h of audio) on this project's "
           "2-core CPU: " + "; ".join(measured) + ".\n") if measured else ""
    return ("## 7. Training on BEAT / VOCASET\n\n"
            "Not run by this project (the data sets need their own licences and downloads); these are the exact "
            "commands. The HuBERT directory is a local copy of `facebook/hubert-base-ls960`, made once with e.g. "
            "`huggingface-cli download facebook/hubert-base-ls960 --local-dir /models/hubert-base-ls960`.\n\n"
            f"```bash\n{REAL_DATA_COMMANDS}```\n\n"
            "What to expect — **estimates, not measurements** (no GPU run was made for this report):\n\n"
            + md_table(["stage", "hardware", "estimate"], estimates, text_columns=3) + "\n" + cpu + "\n"
            "Identity matching on VOCASET's test subjects is not defined (they are unseen speakers): choose a "
            "training identity by name or let `identity=\"auto\"` pick the closest style. Distillation and evaluation "
            "on a GPU (`--device cuda`) have not been exercised in this project yet: no GPU was available to it.\n")


def section_sources(runs: Runs) -> str:
    rows = []
    files = [("main ladder", runs.main, MAIN_COMMAND)]
    files += [(a.label, runs.ablations[n], ABLATIONS_COMMAND) for n, a in ABLATIONS.items()]
    files += [(f"identity: {w}", runs.identity[n], ABLATIONS_COMMAND) for n, (w, _) in IDENTITY_RUNS.items()]
    for what, m, cmd in files:
        if not m.ok:
            rows.append([what, f"`{m.path}`", m.problem or "missing", f"`{cmd}`", "—", "—", "—"])
            continue
        ck = m.meta.get("checkpoints", {})
        checkpoints = ", ".join(f"{v.get('path')} ({v.get('iterations')} it)" for v in ck.values()) or \
            str(m.meta.get("checkpoint", "—"))
        rows.append([what, f"`{m.path}`", "present", f"`{m.meta.get('command') or cmd}`",
                     (m.meta.get("git_commit") or "unknown")[:10], str(m.meta.get("date", "—")), checkpoints])
    return ("## Sources\n\nEvery number above comes from these files (written by `train.evaluate`).\n\n"
            + md_table(["what", "file", "status", "command", "commit", "date", "checkpoints"], rows, text_columns=7))


# ---------------------------------------------------------------------------------------------------------------
# findings: one neutral sentence per comparison the data allows, favourable or not
def _caveat(runs: Runs, name: str) -> str:
    """' (not like-for-like: ...)' when the ablation's teacher differs from the main one beyond what it ablates."""
    m = runs.ablations[name]
    if not (runs.main.ok and m.ok):
        return ""
    it, main_it = m.iterations(), runs.main.iterations()
    differs = bool(_recipe_differences(runs.main, m, ABLATIONS[name])) or (
        it is not None and main_it is not None and it != main_it)
    return " (not like-for-like: that teacher had another budget or recipe; see its section)" if differs else ""


def findings(runs: Runs) -> list[str]:
    out: list[str] = []
    m = runs.main
    if m.ok:
        key, label = _lip_key(m)
        t, s8, base = m.row(m.teacher_row) or {}, m.row("student-8") or {}, m.row(BASELINE) or {}
        rel = _relative(s8.get(key), t.get(key))
        if rel is not None:
            out.append(f"Distillation: the 8-step student's {label} is {fmt(s8.get(key))} against the teacher's "
                       f"{fmt(t.get(key))} ({fmt(rel, 'signed')}) at {fmt(s8.get('speedup'), 'x')} the speed "
                       f"(paper: ×{PAPER_SPEEDUP_8} with quality kept).")
        better, worse = [], []
        for n in STUDENT_STEPS:
            r = _relative((m.row(f"student-{n}") or {}).get(key), (m.row(f"teacher-DDIM-{n}") or {}).get(key))
            if r is not None:
                (better if r < 0 else worse).append(f"{n} ({fmt(r, 'signed')})")
        if better:
            out.append(f"The student beats plain DDIM of the teacher at N = {', '.join(better)} steps.")
        if worse:
            blinks = [(n, (m.row(f"student-{n}") or {}).get("blink_ratio"),
                       (m.row(f"teacher-DDIM-{n}") or {}).get("blink_ratio")) for n in STUDENT_STEPS]
            kept = [f"{n} steps {fmt(a)} vs {fmt(b)}" for n, a, b in blinks
                    if _num(a) is not None and _num(b) is not None and a > b]
            out.append(f"The student does NOT beat plain DDIM of the teacher at N = {', '.join(worse)} steps: at "
                       f"those step counts distillation bought nothing on {label}"
                       + (f"; it keeps the stochastic motion plain DDIM averages away (blink ratio, student vs plain "
                          f"DDIM: {'; '.join(kept)})." if kept else "."))
        rb = _relative(t.get(key), base.get(key))
        if rb is not None:
            out.append(f"The teacher's {label} is {fmt(t.get(key))} against {fmt(base.get(key))} for the "
                       f"per-channel-mean baseline ({fmt(rb, 'signed')}).")
    fd = runs.ablations["facediffuser_style"]
    if m.ok and fd.ok:
        key, label = _lip_key(m)
        ours, theirs = (m.row(m.teacher_row) or {}).get(key), (fd.row("teacher-DDPM-1024") or {}).get(key)
        r = _relative(ours, theirs)
        if r is not None:
            out.append(f"Against the FaceDiffuser-style configuration (DDPM-1024): teacher-512 {label} "
                       f"{fmt(ours)} vs {fmt(theirs)} ({fmt(r, 'signed')}){_caveat(runs, 'facediffuser_style')}.")
    nc = runs.ablations["no_contrastive"]
    if m.ok and nc.ok:
        a, b = m.row(m.teacher_row) or {}, nc.row("teacher-512") or {}
        if _num(a.get("identity_top1")) is not None and _num(b.get("identity_top1")) is not None:
            key, label = _lip_key(m)
            r = _relative(a.get(key), b.get(key))
            cost = "" if r is None else (f"; {label} {fmt(a.get(key))} vs {fmt(b.get(key))} "
                                         f"({fmt(r, 'signed')} {'worse' if r > 0 else 'better'} with the loss)")
            out.append(f"Personalisation: identity top-1 {fmt(a.get('identity_top1'), 'pct')} with the contrastive "
                       f"loss vs {fmt(b.get('identity_top1'), 'pct')} without (untrained head); smile-style r "
                       f"{fmt(a.get('style_smile_r'))} vs {fmt(b.get('style_smile_r'))}{cost}"
                       f"{_caveat(runs, 'no_contrastive')}.")
    ni = runs.ablations["no_identity"]
    if m.ok and ni.ok:
        a, b = m.row(m.teacher_row) or {}, ni.row("teacher-512") or {}
        if _num(a.get("style_smile_err")) is not None and _num(b.get("style_smile_err")) is not None:
            verdict = "smaller" if a["style_smile_err"] < b["style_smile_err"] else "NOT smaller"
            out.append(f"With identities the per-speaker smile gap is {fmt(a.get('style_smile_err'))} vs "
                       f"{fmt(b.get('style_smile_err'))} with none ({verdict}); without identities the style "
                       f"can only come from the voice{_caveat(runs, 'no_identity')}.")
    nv = runs.ablations["no_velocity"]
    if m.ok and nv.ok:
        a, b = m.row(m.teacher_row) or {}, nv.row("teacher-512") or {}
        if _num(a.get("jitter_ratio")) is not None and _num(b.get("jitter_ratio")) is not None:
            out.append(f"Velocity loss: jitter ratio {fmt(a.get('jitter_ratio'))} with vs "
                       f"{fmt(b.get('jitter_ratio'))} without; FDD {fmt(a.get('fdd'))} vs {fmt(b.get('fdd'))}"
                       f"{_caveat(runs, 'no_velocity')}.")
    ne = runs.ablations["no_emotion"]
    if m.ok and ne.ok:
        a, b = m.row(m.teacher_row) or {}, ne.row("teacher-512") or {}
        r = _relative(a.get("lip_error"), b.get("lip_error"))
        if r is not None:
            emotional = [e for e in _emotion_columns([a, b]) if e != "neutral"]
            per = "; ".join(f"{e} {fmt(a.get(f'lip_error_{e}'))} vs {fmt(b.get(f'lip_error_{e}'))}"
                            for e in emotional)
            named = (m.row("student-8 (true emotion)") or {}).get("lip_error")
            out.append(f"Emotion head: teacher lip error {fmt(a.get('lip_error'))} with vs {fmt(b.get('lip_error'))} "
                       f"without ({fmt(r, 'signed')}); by emotion, {per}; the head names "
                       f"{fmt(a.get('emotion_acc'), 'pct')} of the clips' emotions"
                       + (f"; told the true emotion, student-8 reaches {fmt(named)}" if _num(named) is not None
                          else "") + f"{_caveat(runs, 'no_emotion')}.")
    aug, clean = runs.identity["identity-test-augmented"], runs.identity["identity-test"]
    if aug.ok and clean.ok:
        a, b = clean.row(clean.teacher_row) or {}, aug.row(aug.teacher_row) or {}
        out.append(f"Identity matching on held-out sentences: top-1 {fmt(a.get('identity_top1'), 'pct')} on clean "
                   f"audio, {fmt(b.get('identity_top1'), 'pct')} on augmented audio.")
    return out


# ---------------------------------------------------------------------------------------------------------------
# the report
def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def build_report(runs_dir: str | os.PathLike = "runs", out: str | os.PathLike = "REPORT.md",
                 figures_dir: str | os.PathLike | None = None) -> tuple[str, list[Path]]:
    """Write the report to ``out`` and its figures to ``figures_dir`` (default: ``docs`` next to ``out``).

    Returns (markdown text, figure paths written). Stale ``report_*.png`` figures whose data is gone are removed.
    """
    out = Path(out)
    fig_dir = Path(figures_dir) if figures_dir is not None else out.parent / "docs"
    fig_dir.mkdir(parents=True, exist_ok=True)
    fig_rel = os.path.relpath(fig_dir, out.parent).replace(os.sep, "/")
    runs = Runs.load(runs_dir)
    rel = str(runs_dir)

    figures: dict[str, Path] = {}
    if runs.main.ok and any(r.startswith(("student-", "teacher-DDIM-")) for r in runs.main.rows):
        for p in plot_distillation(runs.main, fig_dir):
            figures[p.name] = p
    conf, where = _identity_confusion(runs)
    if conf is not None and conf.get("names"):
        figures[FIGURES[2]] = plot_confusion(conf, f"Identity matching: {where.split(', `')[0]}", fig_dir)
    style_variants = []
    for label, m, row in [("contrastive (main)", runs.main, runs.main.teacher_row)] + [
            (ABLATIONS[n].label, runs.ablations[n], "teacher-512") for n in ("no_contrastive", "no_identity")]:
        table = (m.doc or {}).get("style", {}).get(row) if m.ok else None
        if table:
            style_variants.append((label, table))
    if style_variants:
        p = plot_style(style_variants, fig_dir)
        if p is not None:
            figures[p.name] = p
    for name in FIGURES:  # a figure whose data is gone must not linger next to the report
        if name not in figures and (fig_dir / name).exists():
            (fig_dir / name).unlink()

    commit = _git("rev-parse", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    head = [
        "# DiffusionTalker — reproduction report\n",
        "The paper's claims (arXiv 2311.16565) — personalisation through contrastive identity embeddings, "
        "acceleration through progressive distillation with quality kept, low lip error — measured by this "
        "project on its own synthetic benchmark (10 espeak-ng speakers, 4 takes per utterance; see "
        "`train/make_synthetic.py`). The synthetic data is easier and cleaner than BEAT or VOCASET: the numbers "
        "show how the pieces of the method behave relative to each other here, not how they compare with the "
        "paper's numbers on real data. Every configuration is ONE training run (seed 0, the cpu preset; where an "
        "ablation's budget or recipe differs from the main teacher's, its section says so); how much a retrain "
        "with another seed moves each number was not measured, so read gaps of a "
        "few percent between rows as within noise.\n",
        f"_Generated by `python -m train.report` from metrics files only; do not edit by hand. Code at generation: "
        f"commit {commit[:10]}{' (with uncommitted changes)' if dirty else ''}; the commit and checkpoints behind "
        f"each number are listed under its table and in [Sources](#sources)._\n",
        "Reproduce: `bash train/build_default.sh` (main model, ladder and its evaluation), then "
        "`JOBS=2 bash train/ablations.sh` (ablation teachers and identity runs at the main budget; about 7 h on a "
        "2-core CPU), then "
        "`python -m train.report`.\n",
        "## Summary\n",
    ]
    found = findings(runs)
    head.append("\n".join(f"- {f}" for f in found) + "\n" if found else
                f"_No results yet — run `{MAIN_COMMAND}` and `{ABLATIONS_COMMAND}`._\n")
    sections = [section_main(runs, rel), section_distillation(runs, figures, fig_rel),
                section_personalisation(runs, figures, fig_rel, rel), section_losses(runs, rel),
                section_emotion(runs, rel), section_identity(runs, figures, fig_rel, rel), section_real_data(runs),
                section_sources(runs)]
    text = "\n".join(head) + "\n" + "\n".join(s.rstrip() + "\n" for s in sections)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return text, sorted(figures.values())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default="runs", help="the runs directory (default/, ablations/)")
    ap.add_argument("--out", default="REPORT.md")
    ap.add_argument("--figures", default=None, help="figure directory (default: docs/ next to --out)")
    args = ap.parse_args(argv)
    try:
        _, figs = build_report(args.runs, args.out, args.figures)
    except (DiffusionTalkerError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}" + (f" and {len(figs)} figure(s): {', '.join(str(f) for f in figs)}" if figs else
                                 " (no figures: no metrics files with the data for them yet)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
