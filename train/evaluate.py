"""The paper-style evaluation of a teacher and its distilled students on a test split.

    python -m train.evaluate --checkpoint runs/ladder --data data/synthetic --split test --seeds 4 \\
        --teacher-ddim 8 4 2 1 --out metrics.json --table table.md

For each rung of the ladder (teacher and students), each ``--teacher-ddim N`` (the teacher sampled with plain DDIM
at N steps: the distillation ablation), the data's other takes (what a perfect sampler would score, for data with
several takes per clip) and a per-channel-mean baseline, every test clip is generated with
``--seeds`` seeds, conditioned on the clip's TRUE speaker by name (``"auto"`` when the checkpoint does not know the
speaker), and compared with the ground truth (take 0 of multi-take clips) using :mod:`diffusiontalker.metrics`:

- blendshapes: lip error / MVE / FDD; vertices: LVE / MVE / FDD (regions from ``--lip-idx``/``--upper-idx`` files,
  one index per line, or the procedural head's ``lips`` / ``upper_face`` regions);
- diversity across seeds and across identities (the same audio with every identity by name, seed 0);
- identity top-1 / top-3 matching accuracy of the audio -> identity head (clips whose speaker the model knows);
- mouth-motion std ratio pred/GT, jawOpen Pearson r, blink rate of the samples / of the GT over all takes,
  spread of the stochastic channels over that of the lip channels across seeds, jitter pred/GT;
- seconds of generation per second of audio, per sample (the seeded batch is timed and divided by its size),
  and the speed-up against the teacher;
- style match (blendshapes): per speaker, the mean smile / brow / jaw level of the samples against the GT's
  (``style_<stat>_err``: mean absolute gap over speakers; ``style_<stat>_r``: Pearson r across speakers);
- lip error (vertices: LVE) per emotion label (``lip_error_<emotion>``) when the clips carry two or more labels:
  an emotion that shows on the mouth but that the model cannot hear leaves its clips' error high;
- for models with an emotion head, how often it names a clip's emotion from the audio (``emotion_acc``, and the
  recall per emotion).

Other options: ``--teacher-ddpm N`` samples the teacher with ancestral DDPM at N steps (``--teacher-ddpm 1024``:
every training step, as FaceDiffuser does); ``--augment-audio SEED`` applies the training augmentation
(gain, tilt, reverb, noise floor) to every test clip's audio; ``--identity-only`` only matches identities (no
generation; fast, for identity accuracy on a whole split).

Writes ``metrics.json`` ({"rows": {name: {metric: value}}, "meta": {...}, "identity_confusion": {row: {"names",
"matrix"}}, "style": {row: {speaker: {stat: {"generated", "gt"}}}}}; NaN becomes null) and a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from diffusiontalker import metrics as M
from diffusiontalker.arkit import ARKIT_52, MOUTH_CHANNELS, STOCHASTIC_CHANNELS, reorder
from diffusiontalker.audio import FPS, SAMPLE_RATE, num_frames
from diffusiontalker.checkpoint import read_config
from diffusiontalker.data.augment import augment_audio
from diffusiontalker.data.clips import read_clip, read_meta
from diffusiontalker.diffusion import sample
from diffusiontalker.errors import DataError, DiffusionTalkerError
from diffusiontalker.pipeline import IdentitySpec, Pipeline
from diffusiontalker.schedule import NoiseSchedule

# (wav (N,), identity, num_samples, seed) -> raw motion (S, T, D) in model units (vertex: offsets), identity scores
Generate = Callable[[np.ndarray, IdentitySpec, int, int], tuple[np.ndarray, dict[str, float]]]

BASELINE = "baseline (channel mean)"
# the data's own other takes of each clip scored like samples: what a perfect generative model would score (the
# floor set by take-to-take variation; only for data with two or more takes per clip, such as the synthetic set)
OTHER_TAKES = "data (other takes)"
# style statistics (blendshapes): the mean level over frames and these channels, per clip, averaged per speaker
STYLE_STATS: dict[str, tuple[str, ...]] = {
    "smile": ("mouthSmileLeft", "mouthSmileRight"),
    "brow": ("browInnerUp", "browOuterUpLeft", "browOuterUpRight"),
    "jaw": ("jawOpen",),
}
TIMING_NOTE = "wall-clock seconds of one seeded batch (encode + match + sample) / seeds / seconds of audio"


@dataclass
class EvalClip:
    """One test clip, its motion laid out like the model's output."""

    name: str
    audio: np.ndarray  # (N,) float32 at 16 kHz
    motion: np.ndarray  # (K, T, D) float32, K takes, channels in the model's order (vertex: offsets)
    speaker: str
    emotion: str = ""  # the clip's emotion label, when its data set has one (synthetic, BEAT)

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


# ---------------------------------------------------------------------------------------------------------------
# data
def _to_model_layout(motion: np.ndarray, names: np.ndarray | None, kind: str, model_names: Sequence[str] | None,
                     motion_dim: int, where: str) -> np.ndarray:
    """Clip motion (T, D) or (K, T, D) -> (K, T, D_model): blendshape channels re-laid BY NAME."""
    motion = np.asarray(motion, dtype=np.float32)
    if motion.ndim == 2:
        motion = motion[None]
    if kind == "blendshape" and names is not None:
        motion = reorder(motion, [str(n) for n in names], list(model_names or ARKIT_52))
    if motion.shape[-1] != motion_dim:
        raise DataError(f"{where}: motion has {motion.shape[-1]} channels but the checkpoint outputs {motion_dim}; "
                        f"is this data set the one the model was trained on?")
    return motion


def load_clips(data: str | os.PathLike, split: str, kind: str, model_names: Sequence[str] | None, motion_dim: int,
               max_clips: int | None = None) -> list[EvalClip]:
    """The clips of ``data/split`` (sorted by name). ``max_clips`` picks round-robin over speakers, so a small
    subset still covers every speaker (identity accuracy needs that)."""
    root = Path(data)
    meta = read_meta(root)
    if meta["kind"] != kind:
        raise DataError(f"{root} holds {meta['kind']} clips but the checkpoint outputs {kind}")
    files = sorted((root / split).glob("*.npz"))
    if not files:
        raise DataError(f"no clips in {root / split}; choose a split that exists (e.g. --split test)")
    if max_clips is not None and max_clips < len(files):
        if max_clips < 1:
            raise DataError(f"--max-clips must be at least 1, got {max_clips}")
        by_speaker: dict[str, list[Path]] = {}
        for f in files:
            with np.load(f, allow_pickle=False) as z:
                by_speaker.setdefault(str(z["speaker"]) if "speaker" in z.files else "", []).append(f)
        queues = [by_speaker[s] for s in sorted(by_speaker)]
        picked: list[Path] = []
        while len(picked) < max_clips:
            for q in queues:
                if q and len(picked) < max_clips:
                    picked.append(q.pop(0))
        files = sorted(picked)
    clips = []
    for f in files:
        c = read_clip(f)
        motion = _to_model_layout(c["motion"], c.get("names"), kind, model_names, motion_dim, str(f))
        clips.append(EvalClip(f.stem, np.asarray(c["audio"], dtype=np.float32), motion, str(c["speaker"]),
                              str(c.get("emotion", ""))))
    return clips


def train_mean(data: str | os.PathLike, kind: str, model_names: Sequence[str] | None, motion_dim: int
               ) -> np.ndarray | None:
    """Per-channel mean motion (D,) over the TRAIN split (all frames, all takes); None when there is no train split.

    Reads only the ``motion`` and ``names`` arrays of each clip (npz members load lazily).
    """
    files = sorted((Path(data) / "train").glob("*.npz"))
    if not files:
        return None
    total, count = np.zeros(motion_dim), 0
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            names = z["names"].astype(str) if "names" in z.files else None
            motion = _to_model_layout(z["motion"], names, kind, model_names, motion_dim, str(f))
        flat = motion.reshape(-1, motion_dim).astype(np.float64)  # (K*T, D)
        total += flat.sum(0)
        count += flat.shape[0]
    return total / max(count, 1)


def _read_index_file(path: str | os.PathLike) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"vertex index file not found: {p}; give a text file with one vertex index per line")
    try:
        idx = np.array([int(tok) for tok in p.read_text().replace(",", " ").split()], dtype=np.int64)
    except ValueError:
        raise DataError(f"{p} must hold integer vertex indices (one per line, or separated by commas)") from None
    if idx.size == 0:
        raise DataError(f"{p} holds no vertex indices")
    return idx


def vertex_regions(num_vertices: int, lip_idx: str | os.PathLike | None = None,
                   upper_idx: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lip and upper-face vertex indices: from the user's files, else the procedural head's own regions."""
    regions: dict[str, np.ndarray] = {}
    if lip_idx is None or upper_idx is None:
        try:
            from diffusiontalker.render.rig import load_head

            head = load_head()
        except ImportError as e:  # pragma: no cover - the rig ships with the package
            raise DataError(f"vertex metrics need --lip-idx and --upper-idx files (the procedural head is not "
                            f"available: {e})") from None
        if head.num_vertices != num_vertices:
            raise DataError(f"the model's mesh has {num_vertices} vertices, not the procedural head's "
                            f"{head.num_vertices}; pass --lip-idx and --upper-idx files (one index per line) for "
                            f"this topology")
        regions = {"lips": head.regions["lips"], "upper": head.regions["upper_face"]}
    lips = _read_index_file(lip_idx) if lip_idx is not None else regions["lips"]
    upper = _read_index_file(upper_idx) if upper_idx is not None else regions["upper"]
    for what, idx in (("lip", lips), ("upper-face", upper)):
        if idx.min() < 0 or idx.max() >= num_vertices:
            raise DataError(f"the {what} indices reach {idx.max()} but the mesh has {num_vertices} vertices")
    return lips, upper


# ---------------------------------------------------------------------------------------------------------------
# generators: one per table row
def pipeline_generator(pipe: Pipeline, steps: int, clips: list[EvalClip] | None = None) -> Generate:
    """A ladder rung, sampled through the product path (``Pipeline.__call__``). With ``clips``: conditioned on each
    clip's TRUE emotion by name (as a user who names the emotion), instead of the emotion read from the audio."""
    emotion_of = {id(c.audio): c.emotion for c in clips or []}

    def generate(wav: np.ndarray, identity: IdentitySpec, n: int, seed: int) -> tuple[np.ndarray, dict[str, float]]:
        emotion = emotion_of.get(id(wav)) or "auto"
        anims = pipe(wav, steps=steps, identity=identity, num_samples=n, seed=seed, sr=SAMPLE_RATE, emotion=emotion)
        values = np.stack([a.values for a in anims])  # (S, T, D) or (S, T, V, 3)
        if pipe.kind == "vertex":
            values = (values - anims[0].template[None, None]).reshape(n, values.shape[1], -1)  # offsets (S, T, 3V)
        return values, dict(anims[0].identity_scores)

    return generate


def teacher_ddim_generator(pipe: Pipeline, steps: int, sampler: str = "ddim") -> Generate:
    """The teacher network sampled with plain DDIM on the ``steps`` grid (no distillation): the ablation row.

    Calls :func:`diffusiontalker.diffusion.sample` on the whole clip in one window, with the pipeline's seeding
    (sample i starts from noise seeded ``seed + i``) so rows differ only in the sampler. ``sampler="ddpm"``:
    ancestral DDPM instead (its per-step noise seeded by ``seed``), e.g. over all 1024 training steps.
    """
    teacher = pipe.teacher_steps
    model = pipe.model(teacher)
    schedule = NoiseSchedule(read_config(pipe.rungs[teacher])[0].diffusion.num_train_timesteps)
    schedule.grid(steps)  # fail early with the list of valid step counts

    @torch.no_grad()
    def generate(wav: np.ndarray, identity: IdentitySpec, n: int, seed: int) -> tuple[np.ndarray, dict[str, float]]:
        wav = pipe.load(wav, sr=SAMPLE_RATE)
        feats, mask = pipe.encode(wav, teacher)  # (1, T, C), once per clip
        scores = pipe.match_identity(feats, mask, teacher)
        vec, _ = pipe.identity_vector(identity, scores, teacher)
        # the emotion as the pipeline reads it (for the voice's matched speaker), so rows differ only in the sampler
        emo, _ = pipe.emotion_vector("auto", pipe.read_emotion(feats, mask, teacher, scores, wav))
        T, D = feats.shape[1], model.cfg.motion_dim
        noise = torch.stack([torch.randn(T, D, generator=torch.Generator().manual_seed(seed + i)) for i in range(n)])
        x = sample(model, schedule, feats.expand(n, -1, -1), torch.ones(n, T, dtype=torch.bool),
                   vec[None].expand(n, -1), steps, noise.to(feats.device), sampler=sampler,
                   generator=torch.Generator().manual_seed(seed),
                   emotion=None if emo is None else emo[None].expand(n, -1).to(feats.device))  # (S, T, D) normalised
        motion = model.denormalise(x).cpu().numpy()
        if pipe.kind == "blendshape":
            motion = np.clip(motion, 0.0, 1.0)  # as the pipeline returns blendshapes
        return motion, scores

    return generate


def constant_generator(mean: np.ndarray) -> Generate:
    """The per-channel-mean baseline: the same constant motion for any audio."""

    def generate(wav: np.ndarray, identity: IdentitySpec, n: int, seed: int) -> tuple[np.ndarray, dict[str, float]]:
        T = num_frames(len(wav))
        return np.broadcast_to(mean, (n, T, mean.shape[0])).astype(np.float32), {}

    return generate


def takes_generator(clips: list[EvalClip]) -> Generate:
    """The :data:`OTHER_TAKES` reference row: for a clip's audio, its recorded takes 1 .. K-1 as the "samples"
    (at most ``n``), so they are scored against take 0 exactly as a model's samples are."""
    by_audio = {id(c.audio): c for c in clips}

    def generate(wav: np.ndarray, identity: IdentitySpec, n: int, seed: int) -> tuple[np.ndarray, dict[str, float]]:
        return by_audio[id(wav)].motion[1:1 + n], {}

    return generate


# ---------------------------------------------------------------------------------------------------------------
# metrics of one row
@dataclass
class Context:
    kind: str
    names: list[str] | None
    identity_names: list[str]
    lips: np.ndarray | None = None
    upper: np.ndarray | None = None


def _coords(idx: np.ndarray) -> np.ndarray:
    """Vertex indices -> indices of their x, y, z coordinates in a flattened (3V,) layout."""
    return (idx[:, None] * 3 + np.arange(3)[None]).reshape(-1)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def clip_metrics(samples: np.ndarray, gt: np.ndarray, ctx: Context) -> dict[str, float]:
    """Metrics of S samples (S, T, D) against the GT takes (K, T, D) of one clip (frames already aligned)."""
    g0 = gt[0]  # errors are against take 0
    out: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        out.setdefault(key, []).append(value)

    if ctx.kind == "blendshape":
        names = ctx.names
        jaw = names.index("jawOpen") if "jawOpen" in names else None
        for s in samples:
            add("lip_error", M.lip_error(s, g0, names))
            add("mve", M.mve_blendshape(s, g0))
            add("fdd", M.fdd_blendshape(s, g0, names))
            add("mouth_std_ratio", M.motion_std_ratio(s, g0, names))
            add("jitter_ratio", _ratio(M.jitter(s, FPS), M.jitter(g0, FPS)))
            if jaw is not None:
                add("jaw_r", M.pearson(s[:, jaw], g0[:, jaw]))
            add("blink_rate", M.blink_rate(s, names, FPS))
        for take in gt:
            add("blink_rate_gt", M.blink_rate(take, names, FPS))
        spread_lips = M.channel_spread(samples, names, MOUTH_CHANNELS)
        add("spread_ratio", _ratio(M.channel_spread(samples, names, STOCHASTIC_CHANNELS), spread_lips))
        add("diversity_seeds", M.diversity(samples))
    else:
        lip_c = _coords(ctx.lips)
        for s in samples:
            add("lve", M.lip_vertex_error(s, g0, ctx.lips))
            add("mve", M.mean_vertex_error(s, g0))
            add("fdd", M.upper_face_dynamics_deviation(s, g0, None, ctx.upper))
            add("mouth_std_ratio", M.motion_std_ratio(s[:, lip_c], g0[:, lip_c]))
            add("jitter_ratio", _ratio(M.jitter(s, FPS), M.jitter(g0, FPS)))
        spread_lips = M.channel_spread(samples, None, lip_c)
        add("spread_ratio", _ratio(M.channel_spread(samples, None, _coords(ctx.upper)), spread_lips))
        add("diversity_seeds", M.diversity(samples, vertex=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN lists (e.g. a constant baseline's jaw r)
        return {k: float(np.nanmean(v)) for k, v in out.items()}


def style_statistics(motion: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Talking-style levels of blendshape motion (..., T, D): per :data:`STYLE_STATS` group, the mean over frames
    (and over any leading sample/take axes) of its channels present in ``names``."""
    x = np.asarray(motion, dtype=np.float64)
    out = {}
    for stat, channels in STYLE_STATS.items():
        idx = [names.index(c) for c in channels if c in names]
        if idx:
            out[stat] = float(x[..., idx].mean())
    return out


def style_match(records: Sequence[tuple[str, dict[str, float], dict[str, float]]]
                ) -> tuple[dict[str, float], dict[str, dict[str, dict[str, float]]]]:
    """How well generated style follows each speaker's GT style.

    ``records``: (speaker, generated stats, GT stats) per clip (from :func:`style_statistics`). Per speaker the
    stats are averaged over that speaker's clips; returns the scalars ``style_<stat>_err`` (mean over speakers of
    |generated − GT|) and ``style_<stat>_r`` (Pearson r across speakers; NaN with fewer than 3 speakers), and the
    per-speaker table {speaker: {stat: {"generated": g, "gt": t}}}.
    """
    by_speaker: dict[str, list[tuple[dict[str, float], dict[str, float]]]] = {}
    for speaker, gen, gt in records:
        by_speaker.setdefault(speaker, []).append((gen, gt))
    table: dict[str, dict[str, dict[str, float]]] = {}
    for speaker in sorted(by_speaker):
        pairs = by_speaker[speaker]
        stats = sorted({k for g, t in pairs for k in g if k in t})
        table[speaker] = {k: {"generated": float(np.mean([g[k] for g, _ in pairs])),
                              "gt": float(np.mean([t[k] for _, t in pairs]))} for k in stats}
    scalars: dict[str, float] = {}
    for stat in STYLE_STATS:
        gen = np.array([v[stat]["generated"] for v in table.values() if stat in v])
        gt = np.array([v[stat]["gt"] for v in table.values() if stat in v])
        if gen.size:
            scalars[f"style_{stat}_err"] = float(np.abs(gen - gt).mean())
            scalars[f"style_{stat}_r"] = M.pearson(gen, gt) if gen.size >= 3 else float("nan")
    return scalars, table


def _identity_summary(scores: list[list[float]], labels: list[int], names: Sequence[str]
                      ) -> tuple[dict[str, float], dict]:
    """Top-1 / top-3 accuracy and the confusion matrix (rows: true identity, columns: best match)."""
    s = np.asarray(scores, dtype=np.float64).reshape(len(labels), len(names))  # (clips with a known speaker, K)
    lab = np.asarray(labels, dtype=np.int64)
    matrix = np.zeros((len(names), len(names)), dtype=np.int64)
    if labels:
        np.add.at(matrix, (lab, s.argmax(1)), 1)
    result = {"identity_top1": M.identity_accuracy(s, lab, 1) if labels else float("nan"),
              "identity_top3": M.identity_accuracy(s, lab, 3) if labels else float("nan"),
              "identity_clips": len(labels)}
    return result, {"names": list(names), "matrix": matrix.tolist()}


MAX_DIVERSITY_IDENTITIES = 4  # across-identity diversity uses up to this many identities, spread over the list


def evaluate_row(generate: Generate, clips: list[EvalClip], ctx: Context, seeds: int, timed: bool = True,
                 identities: bool = True, progress: Callable[[], None] | None = None,
                 details: dict | None = None) -> dict[str, float]:
    """Generate every clip with ``seeds`` seeds and average the clip metrics; see the module docstring.

    ``identities``: also generate each clip once per identity (seed 0) for the across-identity diversity. Identity
    matching accuracy is reported whenever the generator returns match scores (not for the baseline).
    ``details``: a dict that receives ``"confusion"`` (identity confusion matrix, when matched) and ``"style"``
    (per-speaker style table, blendshapes).
    """
    per_clip: list[dict[str, float]] = []
    err_key = "lip_error" if ctx.kind == "blendshape" else "lve"
    by_emotion: dict[str, list[float]] = {}
    style_records: list[tuple[str, dict[str, float], dict[str, float]]] = []
    scores, labels = [], []
    gen_seconds = audio_seconds = 0.0
    matched = False
    for clip in clips:
        known = clip.speaker in ctx.identity_names
        tic = time.perf_counter()
        samples, match = generate(clip.audio, clip.speaker if known else "auto", seeds, 0)
        gen_seconds += time.perf_counter() - tic
        audio_seconds += clip.seconds
        T = min(samples.shape[1], clip.motion.shape[1])
        row = clip_metrics(samples[:, :T], clip.motion[:, :T], ctx)
        if ctx.kind == "blendshape" and ctx.names:
            style_records.append((clip.speaker, style_statistics(samples[:, :T], ctx.names),
                                  style_statistics(clip.motion[:, :T], ctx.names)))
        if identities and len(ctx.identity_names) >= 2:
            names = ctx.identity_names[:: max(1, len(ctx.identity_names) // MAX_DIVERSITY_IDENTITIES)]
            per_id = np.stack([generate(clip.audio, name, 1, 0)[0][0, :T]
                               for name in names[:MAX_DIVERSITY_IDENTITIES]])
            row["diversity_identities"] = M.diversity(per_id, vertex=ctx.kind == "vertex")
        matched = matched or bool(match)
        if known and match:
            scores.append([match[n] for n in ctx.identity_names])
            labels.append(ctx.identity_names.index(clip.speaker))
        per_clip.append(row)
        if clip.emotion:
            by_emotion.setdefault(clip.emotion, []).append(row[err_key])
        if progress is not None:
            progress()
    keys = sorted({k for r in per_clip for k in r})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = {k: float(np.nanmean([r.get(k, np.nan) for r in per_clip])) for k in keys}
    if ctx.kind == "blendshape":  # ratio of mean rates: a clip without GT blinks does not divide by zero
        gt_rate = result.get("blink_rate_gt", float("nan"))
        result["blink_ratio"] = result["blink_rate"] / gt_rate if gt_rate > 0 else float("nan")
    if len(by_emotion) >= 2:  # the lip error split by the clips' emotion labels: what the audio must reveal
        for emotion, errs in sorted(by_emotion.items()):
            result[f"{err_key}_{emotion}"] = float(np.mean(errs))
    if matched:
        summary, confusion = _identity_summary(scores, labels, ctx.identity_names)
        result.update(summary)
        if details is not None:
            details["confusion"] = confusion
    if style_records:
        style_scalars, style_table = style_match(style_records)
        result.update(style_scalars)
        if details is not None:
            details["style"] = style_table
    result["s_per_s_audio"] = gen_seconds / seeds / audio_seconds if timed else float("nan")
    return result


def identity_row(pipe: Pipeline, clips: list[EvalClip], steps: int, details: dict | None = None
                 ) -> dict[str, float]:
    """Identity matching only (encode + match, no generation) of one rung over the clips of known speakers."""
    names = pipe.identity_names
    scores, labels = [], []
    for clip in clips:
        if clip.speaker not in names:
            continue
        feats, mask = pipe.encode(clip.audio, steps)
        match = pipe.match_identity(feats, mask, steps)
        scores.append([match[n] for n in names])
        labels.append(names.index(clip.speaker))
    summary, confusion = _identity_summary(scores, labels, names)
    if details is not None:
        details["confusion"] = confusion
    return summary


def emotion_accuracy(pipe: Pipeline, clips: list[EvalClip], steps: int) -> dict[str, float]:
    """How often a rung's emotion head names the emotion label of a clip (over clips labelled with one of its
    emotions), and the recall per emotion; {} for models without an emotion head or data without labels."""
    names = pipe.emotion_names
    hits: dict[str, list[float]] = {}
    for clip in clips:
        if clip.emotion not in names:
            continue
        feats, mask = pipe.encode(clip.audio, steps)
        scores = pipe.read_emotion(feats, mask, steps, wav=clip.audio)
        hits.setdefault(clip.emotion, []).append(float(max(scores, key=scores.get) == clip.emotion))
    if not hits:
        return {}
    out = {"emotion_acc": float(np.mean([h for v in hits.values() for h in v]))}
    out.update({f"emotion_recall_{e}": float(np.mean(v)) for e, v in sorted(hits.items())})
    return out


# ---------------------------------------------------------------------------------------------------------------
# the whole evaluation
RECIPE_KEYS = ("encoder", "encoder_layers", "audio_dim", "identity_dim", "d_model", "n_layers", "n_heads", "ff_mult",
               "dropout", "attn_window", "motion_rank", "global_context", "emotion_head")


def model_recipe(model_cfg) -> dict:
    """The teacher's network settings that decide what a comparison between two runs means (not names or sizes
    fixed by the data)."""
    return {k: getattr(model_cfg, k) for k in RECIPE_KEYS}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parents[1],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def evaluate(checkpoint: str | os.PathLike, data: str | os.PathLike, split: str = "test", seeds: int = 4,
             max_clips: int | None = None, steps: Sequence[int] | None = None, teacher_ddim: Sequence[int] = (),
             lip_idx: str | os.PathLike | None = None, upper_idx: str | os.PathLike | None = None,
             identity_diversity: bool = True, baseline: bool = True, device: str = "cpu",
             progress: bool = False, teacher_ddpm: Sequence[int] = (), augment_seed: int | None = None,
             identity_only: bool = False, true_emotion: Sequence[int] = ()) -> dict:
    """Evaluate a checkpoint or ladder on ``data/split``; returns {"rows": {name: {metric: value}}, "meta": {...},
    "identity_confusion": {row: ...}, "style": {row: ...}} (the last two only for rows that have them).

    Args:
        steps: rungs to evaluate (default: all of the ladder); rungs the ladder lacks are skipped and listed in meta.
        teacher_ddim: step counts at which to also sample the teacher with plain DDIM (any power of two).
        teacher_ddpm: step counts at which to also sample the teacher with ancestral DDPM (1024: every step).
        lip_idx, upper_idx: vertex index files (vertex checkpoints; default: the procedural head's regions).
        identity_diversity: also generate every clip once per identity (seed 0) for the across-identity diversity.
        augment_seed: apply :func:`diffusiontalker.data.augment.augment_audio` to every clip's audio (clip i with
            generator ``default_rng([augment_seed, i])``); the motion is unchanged (same length).
        identity_only: only match identities with each rung (no generation, no baseline): accuracy and confusion.
        true_emotion: rungs (step counts) to evaluate once more conditioned on each clip's true emotion label by
            name (rows "<rung> (true emotion)"): what naming the emotion buys over reading it from the audio. Needs
            a model with an emotion head and clips labelled with its emotions.
    """
    if seeds < 1:
        raise DiffusionTalkerError(f"seeds must be at least 1, got {seeds}")
    pipe = Pipeline.from_pretrained(checkpoint, device=device)
    cfg = pipe.config.model
    kind, names = pipe.kind, (list(cfg.channel_names) if cfg.channel_names else None)
    rungs = pipe.available_steps if steps is None else [int(s) for s in steps]
    missing = [s for s in rungs if s not in pipe.rungs]
    rungs = sorted((s for s in rungs if s in pipe.rungs), reverse=True)
    if not rungs and not teacher_ddim and not teacher_ddpm:
        raise DiffusionTalkerError(f"none of the steps {list(steps or [])} is in this ladder; it has "
                                   f"{pipe.available_steps}")
    clips = load_clips(data, split, kind, names, cfg.motion_dim, max_clips)
    if augment_seed is not None:
        for i, clip in enumerate(clips):
            clip.audio = augment_audio(clip.audio, np.random.default_rng([int(augment_seed), i]))
    ctx = Context(kind, names, pipe.identity_names)
    if kind == "vertex":
        ctx.lips, ctx.upper = vertex_regions(cfg.motion_dim // 3, lip_idx, upper_idx)

    teacher = pipe.teacher_steps
    rows_spec: list[tuple[str, int, Generate]] = []
    for s in rungs:
        label = f"teacher-{s}" if s == teacher else f"student-{s}"
        rows_spec.append((label, s, pipeline_generator(pipe, s)))
    if true_emotion:
        unknown = sorted({c.emotion for c in clips if c.emotion} - set(pipe.emotion_names))
        if not pipe.emotion_names or unknown:
            raise DiffusionTalkerError(
                f"--true-emotion needs a model with an emotion head and clips labelled with its emotions "
                f"(model: {pipe.emotion_names or 'no emotion head'}; clip labels it lacks: {unknown})")
    for s in sorted({int(n) for n in true_emotion if int(n) in pipe.rungs}, reverse=True):
        label = f"teacher-{s}" if s == teacher else f"student-{s}"
        rows_spec.append((f"{label} (true emotion)", s, pipeline_generator(pipe, s, clips)))
    for s in sorted({int(n) for n in teacher_ddim}, reverse=True):
        rows_spec.append((f"teacher-DDIM-{s}", s, teacher_ddim_generator(pipe, s)))
    for s in sorted({int(n) for n in teacher_ddpm}, reverse=True):
        rows_spec.append((f"teacher-DDPM-{s}", s, teacher_ddim_generator(pipe, s, sampler="ddpm")))
    details: dict[str, dict] = {}
    head_accuracy: dict[int, dict[str, float]] = {}  # per network: rows sharing one (DDIM, true emotion) reuse it
    if identity_only:
        rows_spec, baseline = [], False

    mean, baseline_source = None, None
    if baseline:
        mean = train_mean(data, kind, names, cfg.motion_dim)
        baseline_source = f"mean of {Path(data) / 'train'}"
        if mean is None:
            mean = pipe.model(teacher).motion_mean.cpu().numpy().astype(np.float64)
            baseline_source = "the teacher's motion_mean buffer (no train split)"

    rows: dict[str, dict[str, float]] = {}
    for s in rungs if identity_only else []:
        label = f"teacher-{s}" if s == teacher else f"student-{s}"
        details[label] = {}
        rows[label] = {"steps": s, **identity_row(pipe, clips, s, details[label])}

    bar = None
    if progress and (rows_spec or baseline):
        from tqdm import tqdm

        bar = tqdm(total=len(clips) * (len(rows_spec) + int(baseline)), desc="evaluating", unit="clip")
    tick = bar.update if bar is not None else None

    for label, s, gen in rows_spec:
        if bar is not None:
            bar.set_description(label)
        warm = clips[0].audio[: min(len(clips[0].audio), SAMPLE_RATE)]
        gen(warm, "auto", seeds, 0)  # load the rung and warm up kernels outside the timed region
        details[label] = {}
        rows[label] = {"steps": s, **evaluate_row(gen, clips, ctx, seeds, identities=identity_diversity,
                                                          progress=tick, details=details[label])}
        # the emotion head of the network that sampled this row (a teacher-DDIM row uses the teacher's)
        net = teacher if label.startswith(("teacher-DDIM", "teacher-DDPM")) else s
        if net not in head_accuracy:
            head_accuracy[net] = emotion_accuracy(pipe, clips, net)
        rows[label].update(head_accuracy[net])
    if baseline and clips and all(c.motion.shape[0] >= 2 for c in clips):
        details[OTHER_TAKES] = {}
        rows[OTHER_TAKES] = {"steps": 0, **evaluate_row(takes_generator(clips), clips, ctx, seeds, timed=False,
                                                        identities=False, details=details[OTHER_TAKES])}
    if baseline and mean is not None:
        if bar is not None:
            bar.set_description("baseline")
        details[BASELINE] = {}
        rows[BASELINE] = {"steps": 0, **evaluate_row(constant_generator(mean.astype(np.float32)), clips, ctx,
                                                         seeds, timed=False, identities=False, progress=tick,
                                                         details=details[BASELINE])}
    if bar is not None:
        bar.close()

    add_speedups(rows, teacher)

    meta = {
        "checkpoint": str(checkpoint), "data": str(data), "split": split, "kind": kind, "clips": len(clips),
        "clip_names": [c.name for c in clips], "audio_seconds": float(sum(c.seconds for c in clips)),
        "seeds": seeds, "teacher_steps": teacher, "rungs": rungs, "missing_rungs": missing,
        "teacher_ddim": sorted({int(n) for n in teacher_ddim}, reverse=True),
        "teacher_ddpm": sorted({int(n) for n in teacher_ddpm}, reverse=True),
        "augment_audio": augment_seed, "identity_only": identity_only,
        "true_emotion": sorted({int(n) for n in true_emotion}, reverse=True),
        "checkpoints": _checkpoint_meta(pipe),
        "diffusion": dataclasses.asdict(read_config(pipe.rungs[teacher])[0].diffusion),
        "model": model_recipe(read_config(pipe.rungs[teacher])[0].model),
        "identities": pipe.identity_names, "baseline": baseline_source, "timing": TIMING_NOTE,
        "error_reference": "take 0 of each clip; blink rate of the GT over all takes",
        "device": str(pipe.device), "torch_threads": torch.get_num_threads(),
        "git_commit": _git_commit(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    result: dict = {"rows": rows, "meta": meta}
    confusion = {k: d["confusion"] for k, d in details.items() if "confusion" in d}
    style = {k: d["style"] for k, d in details.items() if "style" in d}
    if confusion:
        result["identity_confusion"] = confusion
    if style:
        result["style"] = style
    return result


def _checkpoint_meta(pipe: Pipeline) -> dict[str, dict]:
    """Steps -> {"path", "iterations", "role"} of every rung (from each checkpoint's config.json meta)."""
    out = {}
    for steps, path in sorted(pipe.rungs.items(), reverse=True):
        _, meta = read_config(path)
        out[str(steps)] = {"path": str(path), "iterations": meta.get("iterations"), "role": meta.get("role")}
    return out


# ---------------------------------------------------------------------------------------------------------------
# output
def _finite_or_none(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite_or_none(v) for v in x]
    return x


def add_speedups(rows: dict[str, dict], teacher: int) -> None:
    """speed-up of each row over the teacher row (ratio of seconds per second of audio)."""
    ref = rows.get(f"teacher-{teacher}", {}).get("s_per_s_audio", float("nan"))
    ref = float("nan") if ref is None else ref
    for label, row in rows.items():
        rps = row.get("s_per_s_audio", float("nan"))
        rps = float("nan") if rps is None else rps
        row["speedup"] = ref / rps if label != BASELINE and rps > 0 and math.isfinite(ref) else float("nan")


def merge_metrics(result: dict, others: Sequence[str | os.PathLike]) -> dict:
    """Add the rows of earlier metrics files (e.g. an expensive teacher-512 run on fewer clips) to ``result``,
    teacher rows first; the meta records where each merged row came from."""
    rows: dict[str, dict] = {}
    merged: dict[str, str] = {}
    for path in others:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        for name, row in doc["rows"].items():
            if name not in result["rows"]:
                rows[name] = row
                merged[name] = f"{path} ({doc.get('meta', {}).get('clips')} clips)"
    teacher_rows = {k: v for k, v in rows.items() if re.fullmatch(r"teacher-\d+", k)}
    result["rows"] = teacher_rows | result["rows"] | {k: v for k, v in rows.items() if k not in teacher_rows}
    for last in (OTHER_TAKES, BASELINE):  # keep the reference rows last
        if last in result["rows"]:
            result["rows"][last] = result["rows"].pop(last)
    teacher = max([r.get("steps") or 0 for r in teacher_rows.values()] + [result["meta"].get("teacher_steps") or 0])
    add_speedups(result["rows"], teacher)
    result["meta"]["merged_rows"] = merged
    return result


def format_table(metrics: dict) -> str:
    """The markdown table, laid out like the paper's (rows: teacher, students, DDIM ablation, baseline)."""
    vertex = metrics.get("meta", {}).get("kind") == "vertex"
    cols: list[tuple[str, str, str]] = [("steps", "steps", "int")]
    if vertex:
        cols += [("LVE ↓", "lve", "num"), ("MVE ↓", "mve", "num"), ("FDD", "fdd", "num")]
    else:
        cols += [("lip error ↓", "lip_error", "num"), ("MVE ↓", "mve", "num"), ("FDD", "fdd", "num")]
    cols += [("diversity (seeds)", "diversity_seeds", "num"), ("diversity (ids)", "diversity_identities", "num"),
             ("id top-1", "identity_top1", "pct"), ("id top-3", "identity_top3", "pct"),
             ("mouth std ratio", "mouth_std_ratio", "num")]
    if any("emotion_acc" in row for row in metrics["rows"].values()):
        cols += [("emotion acc", "emotion_acc", "pct")]
    if not vertex:
        cols += [("jaw r", "jaw_r", "num"), ("blink ratio", "blink_ratio", "num")]
    cols += [("s / s audio", "s_per_s_audio", "num"), ("speed-up", "speedup", "x")]
    lines = ["| model | " + " | ".join(c[0] for c in cols) + " |",
             "|---|" + "|".join("---:" for _ in cols) + "|"]
    for name, row in metrics["rows"].items():
        cells = [M.format_metric(row.get(key), style) if not (key == "steps" and name in (BASELINE, OTHER_TAKES))
                 else "—"
                 for _, key, style in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    meta = metrics.get("meta", {})
    if meta:
        lines.append("")
        lines.append(f"{meta.get('clips')} clips of `{meta.get('data')}` ({meta.get('split')}), "
                     f"{meta.get('seeds')} seeds; errors against take 0; s / s audio: {meta.get('timing')}; "
                     f"baseline: {meta.get('baseline')}; commit {meta.get('git_commit') or 'unknown'}, "
                     f"{meta.get('date')}.")
    return "\n".join(lines) + "\n"


def write_outputs(metrics: dict, out: str | os.PathLike | None, table: str | os.PathLike | None) -> None:
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(_finite_or_none(metrics), indent=2) + "\n", encoding="utf-8")
    if table is not None:
        Path(table).parent.mkdir(parents=True, exist_ok=True)
        Path(table).write_text(format_table(metrics), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a ladder dir (ladder.json) or one checkpoint dir")
    ap.add_argument("--data", required=True, help="a clip directory (meta.json + split folders)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--max-clips", type=int, default=None, help="evaluate at most N clips (round-robin by speaker)")
    ap.add_argument("--seeds", type=int, default=4, help="samples per clip (diversity across seeds)")
    ap.add_argument("--steps", type=int, nargs="+", default=None, help="rungs to evaluate (default: all)")
    ap.add_argument("--teacher-ddim", type=int, nargs="*", default=[],
                    help="also sample the teacher with plain DDIM at these step counts (distillation ablation)")
    ap.add_argument("--teacher-ddpm", type=int, nargs="*", default=[],
                    help="also sample the teacher with ancestral DDPM at these step counts (1024: every training "
                         "step, as FaceDiffuser samples)")
    ap.add_argument("--augment-audio", type=int, default=None, metavar="SEED",
                    help="apply the training audio augmentation (gain, tilt, reverb, noise) to every clip, seeded")
    ap.add_argument("--true-emotion", type=int, nargs="*", default=[], metavar="STEPS",
                    help="also evaluate these rungs conditioned on each clip's true emotion label by name "
                         "(models with an emotion head)")
    ap.add_argument("--identity-only", action="store_true",
                    help="only match identities (top-1/top-3, confusion matrix); no generation")
    ap.add_argument("--lip-idx", default=None, help="vertex data: file of lip vertex indices, one per line")
    ap.add_argument("--upper-idx", default=None, help="vertex data: file of upper-face vertex indices")
    ap.add_argument("--no-identity-diversity", action="store_true",
                    help="skip generating every clip once per identity (saves time)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--merge", nargs="*", default=[], metavar="METRICS_JSON",
                    help="add the rows of earlier metrics files missing from this run (e.g. a teacher-512 run on "
                         "fewer clips); speed-ups are recomputed against the merged teacher row")
    ap.add_argument("--out", default="metrics.json")
    ap.add_argument("--table", default=None,
                    help="markdown table to write (default: next to --out, e.g. runs/x/metrics_table.md)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        result = evaluate(args.checkpoint, args.data, split=args.split, seeds=args.seeds, max_clips=args.max_clips,
                          steps=args.steps, teacher_ddim=args.teacher_ddim, lip_idx=args.lip_idx,
                          upper_idx=args.upper_idx, identity_diversity=not args.no_identity_diversity,
                          device=args.device, progress=not args.quiet, teacher_ddpm=args.teacher_ddpm,
                          augment_seed=args.augment_audio, identity_only=args.identity_only,
                          true_emotion=args.true_emotion)
        result["meta"]["command"] = "python -m train.evaluate " + shlex.join(
            sys.argv[1:] if argv is None else [str(a) for a in argv])
        if args.merge:
            result = merge_metrics(result, args.merge)
        write_outputs(result, args.out, args.table or Path(args.out).with_name(Path(args.out).stem + "_table.md"))
    except DiffusionTalkerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(format_table(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
