"""VOCASET → the common clip format (vertex offsets from each subject's template, 30 fps).

Two layouts are read:

* the raw release: ``data_verts.npy`` (N, 5023, 3) opened with mmap, ``raw_audio_fixed.pkl`` (subject → sentence →
  {'audio': int16, 'sample_rate': int}), ``subj_seq_to_idx.pkl`` (subject → sentence → {frame: row}),
  ``templates.pkl`` (subject → (5023, 3)); Python-2 pickles, read with the restricted unpickler (latin-1);
* the common processed layout: ``vertices_npy/{subject}_{sentence}.npy`` (T, 15069), ``wav/{subject}_{sentence}.wav``
  and ``templates.pkl``.

Vertices are at 60 fps; every second frame gives 30 fps. The standard split (FaceFormer / CodeTalker /
FaceDiffuser): 8 training subjects with sentences 1–40, 2 validation and 2 test subjects with sentences 21–40.
Motion is stored as offsets from the subject's template, flattened to (T, 3V), with the template in each clip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from diffusiontalker.audio import SAMPLE_RATE, load_audio
from diffusiontalker.data import safe_pickle
from diffusiontalker.data.clips import align_clip, compute_norm, write_clip, write_meta
from diffusiontalker.errors import DataError

VOCASET_FPS = 60
TRAIN_SUBJECTS: tuple[str, ...] = tuple("FaceTalk_" + s for s in (
    "170728_03272_TA", "170904_00128_TA", "170725_00137_TA", "170915_00223_TA", "170811_03274_TA",
    "170913_03279_TA", "170904_03276_TA", "170912_03278_TA"))
VAL_SUBJECTS: tuple[str, ...] = ("FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA")
TEST_SUBJECTS: tuple[str, ...] = ("FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA")
TRAIN_SENTENCES = range(1, 41)
EVAL_SENTENCES = range(21, 41)

_SENTENCE_RE = re.compile(r"sentence(\d+)$")


def sentence_number(name: str) -> int:
    """``sentence07`` → 7 (DataError otherwise)."""
    m = _SENTENCE_RE.search(name)
    if not m:
        raise DataError(f"{name!r} is not a VOCASET sentence name like 'sentence07'")
    return int(m.group(1))


def split_of(subject: str, sentence: int) -> str | None:
    """The standard split of (subject, sentence number), or None when the protocol leaves it out."""
    if subject in TRAIN_SUBJECTS and sentence in TRAIN_SENTENCES:
        return "train"
    if subject in VAL_SUBJECTS and sentence in EVAL_SENTENCES:
        return "val"
    if subject in TEST_SUBJECTS and sentence in EVAL_SENTENCES:
        return "test"
    return None


def load_templates(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """templates.pkl → {subject: (V, 3) float32}, through the restricted unpickler."""
    data = safe_pickle.load(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a dict subject -> (V, 3) template, got {type(data).__name__}")
    out = {}
    for subj, tpl in data.items():
        arr = np.asarray(tpl, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise DataError(f"{path}: template of {subj} has shape {arr.shape}, expected (V, 3)")
        out[str(subj)] = arr
    return out


def read_vertex_indices(path: str | os.PathLike) -> np.ndarray:
    """A user-supplied vertex index list (one integer per line; blank lines and # comments ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"vertex index file not found: {path} (one vertex index per line)")
    vals = []
    for k, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            vals.append(int(line))
        except ValueError as exc:
            raise DataError(f"{path}:{k}: {line!r} is not a vertex index") from exc
    if not vals:
        raise DataError(f"{path} lists no vertex indices")
    return np.asarray(vals, dtype=np.int64)


def _sequences_raw(root: Path, templates: dict[str, np.ndarray]):
    """Yield (subject, sentence name, audio 16 kHz, vertices (T60, V, 3)) from the raw release."""
    verts = np.load(root / "data_verts.npy", mmap_mode="r")
    audio_all = safe_pickle.load(root / "raw_audio_fixed.pkl")
    index = safe_pickle.load(root / "subj_seq_to_idx.pkl")
    for subj in sorted(index):
        for seq in sorted(index[subj]):
            frames = index[subj][seq]
            try:
                rec = audio_all[subj][seq]
            except (KeyError, TypeError):
                continue
            rows = [frames[f] for f in sorted(frames)]
            sr = int(rec["sample_rate"])
            audio = load_audio(np.asarray(rec["audio"]), sr=sr)
            yield str(subj), str(seq), audio, np.asarray(verts[rows], dtype=np.float32)


def _sequences_processed(root: Path, templates: dict[str, np.ndarray]):
    """Yield (subject, sentence name, audio 16 kHz, vertices (T60, V, 3)) from vertices_npy/ + wav/."""
    for vp in sorted((root / "vertices_npy").glob("*.npy")):
        subj, _, seq = vp.stem.rpartition("_")
        if subj not in templates:
            continue
        wav = root / "wav" / f"{vp.stem}.wav"
        if not wav.is_file():
            continue
        v = np.load(vp, allow_pickle=False).astype(np.float32)
        V = templates[subj].shape[0]
        if v.ndim != 2 or v.shape[1] != 3 * V:
            raise DataError(f"{vp}: expected (T, {3 * V}) vertices for {subj}, got {v.shape}")
        yield subj, seq, load_audio(wav), v.reshape(v.shape[0], V, 3)


def detect_layout(root: str | os.PathLike) -> str:
    """``"raw"`` (data_verts.npy) or ``"processed"`` (vertices_npy/); DataError when neither is there."""
    root = Path(root)
    if not (root / "templates.pkl").is_file():
        raise DataError(f"{root} has no templates.pkl; point at the VOCASET folder (raw release or the "
                        f"vertices_npy/ + wav/ layout)")
    if (root / "data_verts.npy").is_file():
        return "raw"
    if (root / "vertices_npy").is_dir():
        return "processed"
    raise DataError(f"{root} has neither data_verts.npy (raw release) nor vertices_npy/ (processed layout)")


def prepare_vocaset(root: str | os.PathLike, out: str | os.PathLike, lip_indices: str | None = None,
                    upper_face_indices: str | None = None, progress: bool = True) -> dict:
    """Convert VOCASET (either layout) into a vertex clip directory ``out``; returns the statistics."""
    from tqdm import tqdm

    root, out = Path(root), Path(out)
    layout = detect_layout(root)
    templates = load_templates(root / "templates.pkl")
    seqs = _sequences_raw(root, templates) if layout == "raw" else _sequences_processed(root, templates)
    counts: Counter = Counter()
    seconds: Counter = Counter()
    skipped: Counter = Counter()
    subjects: set[str] = set()
    for subj, seq, audio, verts in tqdm(seqs, desc="VOCASET sequences", disable=not progress):
        try:
            split = split_of(subj, sentence_number(seq))
        except DataError:
            skipped["not a sentence name"] += 1
            continue
        if split is None:
            skipped["outside the standard split"] += 1
            continue
        if subj not in templates:
            raise DataError(f"templates.pkl has no template for {subj}")
        template = templates[subj]  # (V, 3)
        if verts.shape[1:] != template.shape:
            raise DataError(f"{subj} {seq}: vertices {verts.shape[1:]} do not match its template {template.shape}")
        offsets = (verts[:: VOCASET_FPS // 30] - template[None]).reshape(-1, template.size)  # (T30, 3V)
        audio, offsets = align_clip(audio, offsets)
        write_clip(out / split / f"{subj}_{seq}.npz", audio=audio, motion=offsets, kind="vertex", template=template,
                   speaker=subj, emotion="neutral")
        counts[split] += 1
        seconds[split] += len(audio) / SAMPLE_RATE
        subjects.add(subj)
    if not counts:
        raise DataError(f"no VOCASET sequence of the standard split found under {root} (skipped: {dict(skipped)})")
    extra = {}
    for key, src in (("lip_vertices", lip_indices), ("upper_face_vertices", upper_face_indices)):
        if src:
            idx = read_vertex_indices(src)
            dst = out / f"{key}.txt"
            shutil.copyfile(src, dst)
            extra[key] = dst.name
            extra[key + "_count"] = int(idx.size)
    write_meta(out, kind="vertex", names=None, speakers=sorted(s for s in subjects if s in TRAIN_SUBJECTS),
               heldout_speakers=sorted(s for s in subjects if s not in TRAIN_SUBJECTS), source="vocaset",
               layout=layout, **extra)
    compute_norm(out)
    stats = {"clips": sum(counts.values()), "hours": sum(seconds.values()) / 3600, "splits": dict(counts),
             "subjects": sorted(subjects), "skipped": dict(skipped), "layout": layout}
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats
