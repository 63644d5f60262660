"""BEAT facial takes → the common clip format (ARKit-52 at 30 fps, 10 s clips, stratified 80/10/10 split).

A take is ``{speaker_id}_{name}_{language}_{take}_{...}.json`` + ``.wav`` (e.g. ``2_scott_0_1_1``). The JSON holds
``names`` (51 ARKit names, no tongueOut) and ``frames[i].weights`` at 60 fps; channels are mapped to ARKit-52 BY
NAME (the file's own ``names``; never an assumed order) and tongueOut is 0. Frames 60→30 fps by taking every second
frame. The emotion follows from the take index ranges. The split (FaceDiffuser's protocol) is stratified by
(speaker, emotion), 80/10/10, seed 42; it is drawn over TAKES, so the 10 s clips of one take never straddle splits.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffusiontalker.arkit import ARKIT_52, from_pascal
from diffusiontalker.audio import FPS, SAMPLE_RATE, load_audio
from diffusiontalker.data.clips import align_clip, compute_norm, split_counts, write_clip, write_meta
from diffusiontalker.errors import DataError

BEAT_FPS = 60
PAPER_SPEAKERS = (2, 4, 6, 8)  # scott, lawrence, carla, catherine
# take index ranges -> emotion (inclusive)
EMOTION_RANGES: tuple[tuple[int, int, str], ...] = (
    (0, 64, "neutral"), (65, 72, "happiness"), (73, 80, "anger"), (81, 86, "sadness"), (87, 94, "contempt"),
    (95, 102, "surprise"), (103, 110, "fear"), (111, 118, "disgust"),
)


def emotion_of_take(take: int) -> str:
    """BEAT's emotion for a take index (0–64 neutral, 65–72 happiness, ..., 111–118 disgust)."""
    for lo, hi, name in EMOTION_RANGES:
        if lo <= take <= hi:
            return name
    raise DataError(f"BEAT take index {take} is outside 0–118; cannot tell its emotion")


@dataclass(frozen=True)
class BeatTake:
    """One BEAT take: its files and what its name says."""

    json_path: Path
    wav_path: Path
    speaker_id: int
    speaker: str  # "2_scott"
    language: int
    take: int
    emotion: str


def parse_take_name(stem: str) -> tuple[int, str, int, int]:
    """``2_scott_0_1_1`` → (speaker id 2, name "scott", language 0, take 1). DataError when it does not parse."""
    parts = stem.split("_")
    try:
        return int(parts[0]), parts[1], int(parts[2]), int(parts[3])
    except (IndexError, ValueError) as exc:
        raise DataError(f"{stem!r} is not a BEAT take name like '2_scott_0_1_1' "
                        f"(speaker_name_language_take_...)") from exc


def find_takes(root: str | os.PathLike, speakers: tuple[int, ...] | list[int] | None = PAPER_SPEAKERS,
               languages: tuple[int, ...] | list[int] = (0,)) -> tuple[list[BeatTake], Counter]:
    """Takes under ``root`` (searched recursively) of the given speaker ids and languages (0 = English).

    Returns the takes (sorted by name) and counts of the files skipped and why.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"BEAT folder not found: {root}")
    takes, skipped = [], Counter()
    for jp in sorted(root.rglob("*.json")):
        try:
            sid, name, lang, take = parse_take_name(jp.stem)
        except DataError:
            skipped["not a take name"] += 1
            continue
        if speakers is not None and sid not in speakers:
            skipped["other speaker"] += 1
            continue
        if lang not in languages:
            skipped["other language"] += 1
            continue
        wav = jp.with_suffix(".wav")
        if not wav.is_file():
            skipped["no .wav beside the .json"] += 1
            continue
        takes.append(BeatTake(jp, wav, sid, f"{sid}_{name}", lang, take, emotion_of_take(take)))
    return takes, skipped


def read_beat_json(path: str | os.PathLike) -> np.ndarray:
    """A BEAT facial JSON → (T, 52) float32 ARKit-52 weights at 60 fps, mapped BY NAME (tongueOut = 0)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable BEAT JSON ({exc})") from exc
    names = data.get("names")
    frames = data.get("frames")
    if not isinstance(names, list) or not isinstance(frames, list) or not frames:
        raise DataError(f"{path}: a BEAT JSON needs 'names' (list) and non-empty 'frames'")
    unknown = [n for n in names if from_pascal(str(n)) not in ARKIT_52]
    if unknown:
        raise DataError(f"{path}: names {unknown[:5]} are not ARKit blendshape names")
    try:
        weights = np.asarray([f["weights"] for f in frames], dtype=np.float32)  # (T60, len(names))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: every frame needs 'weights' with {len(names)} numbers ({exc})") from exc
    if weights.ndim != 2 or weights.shape[1] != len(names):
        raise DataError(f"{path}: frames have {weights.shape[-1]} weights but 'names' lists {len(names)}")
    src = {from_pascal(str(n)): i for i, n in enumerate(names)}
    out = np.zeros((weights.shape[0], len(ARKIT_52)), np.float32)
    for j, n in enumerate(ARKIT_52):
        if n in src:
            out[:, j] = weights[:, src[n]]
    return out


def take_to_clips(take: BeatTake, clip_seconds: float = 10.0, min_seconds: float = 2.0) -> list[dict]:
    """One take → clips of ``clip_seconds`` (a shorter tail is kept when at least ``min_seconds``)."""
    motion = read_beat_json(take.json_path)[:: BEAT_FPS // FPS]  # (T30, 52): every second frame
    audio = load_audio(take.wav_path, max_seconds=24 * 3600)
    audio, motion = align_clip(audio, motion)
    W = int(round(clip_seconds * FPS))
    clips = []
    for k, s in enumerate(range(0, motion.shape[0], W)):
        m = motion[s:s + W]
        if m.shape[0] < min_seconds * FPS:
            break
        a0, a1 = int(round(s * SAMPLE_RATE / FPS)), int(round((s + m.shape[0]) * SAMPLE_RATE / FPS))
        clips.append({"stem": f"{take.json_path.stem}_{k:03d}", "audio": audio[a0:a1], "motion": m,
                      "kind": "blendshape", "names": np.array(ARKIT_52), "speaker": take.speaker,
                      "emotion": take.emotion, "take": np.int64(take.take)})
    return clips


def split_takes(takes: list[BeatTake], seed: int = 42) -> dict[Path, str]:
    """Split takes 80/10/10 stratified by (speaker, emotion) with ``seed`` → {json path: split}."""
    groups: dict[tuple[str, str], list[BeatTake]] = defaultdict(list)
    for t in takes:
        groups[(t.speaker, t.emotion)].append(t)
    rng = np.random.default_rng(seed)
    out = {}
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda t: t.json_path.name)
        order = rng.permutation(len(members))
        n_tr, n_va, _ = split_counts(len(members))
        for rank, idx in enumerate(order):
            out[members[idx].json_path] = "train" if rank < n_tr else ("val" if rank < n_tr + n_va else "test")
    return out


def prepare_beat(root: str | os.PathLike, out: str | os.PathLike,
                 speakers: tuple[int, ...] | list[int] | None = PAPER_SPEAKERS, clip_seconds: float = 10.0,
                 seed: int = 42, languages: tuple[int, ...] | list[int] = (0,), progress: bool = True) -> dict:
    """Convert BEAT takes under ``root`` into a clip directory ``out``; returns the statistics (stats.json)."""
    from tqdm import tqdm

    out = Path(out)
    takes, skipped = find_takes(root, speakers, languages)
    if not takes:
        raise DataError(f"no BEAT takes of speakers {list(speakers) if speakers else 'any'} in languages "
                        f"{list(languages)} under {root} (skipped: {dict(skipped)}); expected files like "
                        f"2_scott/2_scott_0_1_1.json with a .wav beside each")
    split_of = split_takes(takes, seed)
    counts: Counter = Counter()
    seconds: Counter = Counter()
    for take in tqdm(takes, desc="BEAT takes", disable=not progress):
        split = split_of[take.json_path]
        for clip in take_to_clips(take, clip_seconds):
            stem = clip.pop("stem")
            write_clip(out / split / f"{stem}.npz", **clip)
            counts[split] += 1
            seconds[split] += len(clip["audio"]) / SAMPLE_RATE
    write_meta(out, kind="blendshape", names=list(ARKIT_52), speakers=sorted({t.speaker for t in takes}),
               heldout_speakers=[], source="beat", clip_seconds=clip_seconds, split_seed=seed,
               languages=list(languages),
               emotions=[name for _, _, name in EMOTION_RANGES if any(t.emotion == name for t in takes)])
    compute_norm(out)
    stats = {"clips": sum(counts.values()), "hours": sum(seconds.values()) / 3600, "splits": dict(counts),
             "takes": len(takes), "skipped_files": dict(skipped),
             "emotions": dict(Counter(t.emotion for t in takes)),
             "takes_per_speaker": dict(Counter(t.speaker for t in takes))}
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats
