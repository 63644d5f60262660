"""The common clip format every data source writes, and the Dataset the trainers read.

A clip directory::

    ROOT/meta.json     kind, fps, sample_rate, names, speakers, heldout_speakers, source, ...
    ROOT/norm.npz      mean (D,), std (D,) per motion channel over the TRAIN split (std floored at 1e-3), count
    ROOT/stats.json    clips, hours, split counts, ...
    ROOT/{train,val,test,test_heldout}/*.npz   one clip each

One clip ``.npz`` (readable with ``allow_pickle=False``): ``audio`` float32 (N,) at 16 kHz; ``motion`` float32
(T, D) or (K, T, D) for K takes of one utterance at 30 fps with T == num_frames(N); ``kind``; ``names`` (D,) for
blendshapes; ``template`` (V, 3) for vertices (motion = offsets from it, flattened to D = 3V); ``speaker``;
``emotion``; and optional extras (synthetic: ``text``, ``phone_starts``/``phone_ends``/``phone_names``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from diffusiontalker.audio import FPS, SAMPLE_RATE, num_frames
from diffusiontalker.errors import DataError

KINDS = ("blendshape", "vertex")
SPLITS = ("train", "val", "test", "test_heldout")
STD_FLOOR = 1e-3
_STRING_FIELDS = ("kind", "speaker", "emotion", "text")


def _validate(clip: dict, where: str) -> dict:
    """Check one clip's fields and shapes; raises DataError naming the file and what is wrong."""
    for key in ("audio", "motion", "kind", "speaker"):
        if key not in clip:
            raise DataError(f"{where}: clip has no '{key}' field (fields: {sorted(clip)})")
    audio = np.asarray(clip["audio"])
    motion = np.asarray(clip["motion"])
    if audio.ndim != 1 or audio.size == 0:
        raise DataError(f"{where}: audio must be a non-empty 1-D array of 16 kHz samples, got shape {audio.shape}")
    if motion.ndim not in (2, 3) or motion.shape[-2] == 0:
        raise DataError(f"{where}: motion must be (T, D) or (K, T, D), got shape {motion.shape}")
    T = num_frames(audio.shape[0])
    if motion.shape[-2] != T:
        raise DataError(f"{where}: motion has {motion.shape[-2]} frames but the audio ({audio.shape[0]} samples) "
                        f"needs {T} at {FPS} fps")
    if not np.all(np.isfinite(motion)) or not np.all(np.isfinite(audio)):
        raise DataError(f"{where}: audio or motion holds NaN/Inf values")
    kind = str(clip["kind"])
    if kind not in KINDS:
        raise DataError(f"{where}: kind must be one of {list(KINDS)}, got {kind!r}")
    D = motion.shape[-1]
    if kind == "blendshape":
        if "names" not in clip or len(clip["names"]) != D:
            raise DataError(f"{where}: a blendshape clip needs 'names' with one name per channel ({D})")
    else:
        template = np.asarray(clip.get("template", np.zeros((0, 3))))
        if template.ndim != 2 or template.shape[1] != 3 or template.shape[0] * 3 != D:
            raise DataError(f"{where}: a vertex clip needs 'template' (V, 3) with 3V == {D} motion channels, "
                            f"got {template.shape}")
    return clip


def write_clip(path: str | os.PathLike, **fields) -> Path:
    """Write one clip ``.npz`` atomically (temp name in the same folder, then rename). Returns the path.

    Strings become numpy unicode scalars and no field may need pickling, so readers can use allow_pickle=False.
    """
    path = Path(path)
    clip = dict(fields)
    clip["audio"] = np.ascontiguousarray(clip["audio"], dtype=np.float32)
    clip["motion"] = np.ascontiguousarray(clip["motion"], dtype=np.float32)
    clip.setdefault("emotion", "neutral")
    if "template" in clip and clip["template"] is not None:
        clip["template"] = np.asarray(clip["template"], dtype=np.float32)
    else:
        clip.pop("template", None)
    if clip.get("names") is None:
        clip.pop("names", None)
    else:
        clip["names"] = np.asarray([str(n) for n in clip["names"]], dtype=str)
    _validate(clip, str(path))
    arrays = {}
    for key, value in clip.items():
        arr = np.asarray(str(value)) if isinstance(value, str) else np.asarray(value)
        if arr.dtype == object:
            raise DataError(f"{path}: field '{key}' would need pickling; store numbers or strings only")
        arrays[key] = arr
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_clip(path: str | os.PathLike) -> dict:
    """Read and validate one clip file; strings come back as ``str``, arrays as numpy arrays."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"clip file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            clip = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        raise DataError(f"{path}: clip holds pickled objects, which are refused ({exc})") from exc
    except Exception as exc:  # zip/format errors
        raise DataError(f"{path}: not a readable clip .npz ({type(exc).__name__}: {exc})") from exc
    for key in _STRING_FIELDS:
        if key in clip:
            clip[key] = str(clip[key])
    if "names" in clip:
        clip["names"] = clip["names"].astype(str)
    return _validate(clip, str(path))


def read_meta(root: str | os.PathLike) -> dict:
    """ROOT/meta.json as a dict (DataError when missing or malformed)."""
    p = Path(root) / "meta.json"
    if not p.is_file():
        raise DataError(f"{root} is not a clip directory (no meta.json); make one with train.make_synthetic, "
                        f"train.prepare_beat or train.prepare_vocaset")
    try:
        meta = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{p} is not valid JSON: {exc}") from exc
    if meta.get("kind") not in KINDS:
        raise DataError(f"{p}: 'kind' must be one of {list(KINDS)}, got {meta.get('kind')!r}")
    return meta


def compute_norm(root: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean/std of the motion over ``split`` (all frames, all takes); writes ROOT/norm.npz."""
    root = Path(root)
    files = sorted((root / split).glob("*.npz"))
    if not files:
        raise DataError(f"no clips in {root / split}; cannot compute normalisation statistics")
    total = None
    total_sq = None
    count = 0
    for f in files:
        motion = read_clip(f)["motion"].astype(np.float64)
        flat = motion.reshape(-1, motion.shape[-1])  # (K*T, D)
        if total is None:
            total = np.zeros(flat.shape[1])
            total_sq = np.zeros(flat.shape[1])
        if flat.shape[1] != total.shape[0]:
            raise DataError(f"{f}: motion has {flat.shape[1]} channels, other clips have {total.shape[0]}")
        total += flat.sum(0)
        total_sq += (flat ** 2).sum(0)
        count += flat.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
    std = np.maximum(std, STD_FLOOR)
    np.savez(root / "norm.npz", mean=mean.astype(np.float32), std=std.astype(np.float32), count=np.int64(count))
    return mean.astype(np.float32), std.astype(np.float32)


def _load_norm(root: Path) -> tuple[np.ndarray, np.ndarray, int]:
    p = root / "norm.npz"
    if not p.is_file():
        compute_norm(root)
    with np.load(p, allow_pickle=False) as npz:
        count = int(npz["count"]) if "count" in npz.files else 1
        return npz["mean"].astype(np.float64), npz["std"].astype(np.float64), count


class ClipDataset(torch.utils.data.Dataset):
    """Clips of one or more clip directories, cut into random windows for training.

    Items: ``audio`` (N,) float32, ``motion`` (T, D) RAW (not normalised; use :attr:`mean`/:attr:`std`),
    ``speaker`` index (-1 for a speaker outside :attr:`speakers`), ``emotion`` index into :attr:`emotions` (-1 when
    the clip has no emotion label or one outside the list), ``num_frames`` T, ``name``. With a
    (K, T, D) clip one take is drawn at random per item. Windows map frames [s, s+W) to audio samples
    [round(s·SR/FPS), round((s+W)·SR/FPS)) so that ``num_frames(len(audio)) == W``.
    """

    def __init__(self, roots: str | Path | list, split: str = "train", window: tuple[float, float] | None = (2.0, 6.0),
                 augment: bool = False, seed: int = 0, speakers: list[str] | None = None, cache: bool = False,
                 emotions: list[str] | None = None):
        roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
        if not roots:
            raise DataError("ClipDataset needs at least one clip directory")
        self.roots = [Path(r) for r in roots]
        self.split = split
        self.window = window
        if window is not None and not (0 < window[0] <= window[1]):
            raise DataError(f"window must be (min_s, max_s) with 0 < min_s <= max_s, got {window}")
        self.augment = augment
        self.seed = seed
        metas = [read_meta(r) for r in self.roots]
        kinds = {m["kind"] for m in metas}
        if len(kinds) > 1:
            raise DataError(f"cannot mix clip kinds {sorted(kinds)} in one dataset ({[str(r) for r in self.roots]})")
        self.kind: str = metas[0]["kind"]
        names = [tuple(m["names"]) if m.get("names") else None for m in metas]
        if len(set(names)) > 1:
            raise DataError("clip directories disagree on channel names; convert them to ARKit-52 first")
        self.names: tuple[str, ...] | None = names[0]
        self.fps: int = int(metas[0].get("fps", FPS))
        if self.fps != FPS or int(metas[0].get("sample_rate", SAMPLE_RATE)) != SAMPLE_RATE:
            raise DataError(f"clips must be {FPS} fps / {SAMPLE_RATE} Hz, {self.roots[0]} says "
                            f"{self.fps} fps / {metas[0].get('sample_rate')} Hz")
        if speakers is None:
            speakers = sorted({s for m in metas for s in m.get("speakers", [])})
        self.speakers: list[str] = list(speakers)
        self.speaker_to_index: dict[str, int] = {s: i for i, s in enumerate(self.speakers)}
        if emotions is None:  # the labels the directories declare (meta.json "emotions"), in their order
            emotions = list(dict.fromkeys(e for m in metas for e in m.get("emotions", [])))
        self.emotions: list[str] = list(emotions)
        self.emotion_to_index: dict[str, int] = {e: i for i, e in enumerate(self.emotions)}
        self.files: list[Path] = []
        for r in self.roots:
            self.files.extend(sorted((r / split).glob("*.npz")))
        if not self.files:
            present = sorted({p.name for r in self.roots for p in r.iterdir() if p.is_dir()})
            raise DataError(f"no clips in split '{split}' of {[str(r) for r in self.roots]}; splits present: {present}")
        # pooled normalisation over the roots (weighted by frame counts)
        stats = [_load_norm(r) for r in self.roots]
        n = np.array([c for _, _, c in stats], np.float64)
        means = np.stack([m for m, _, _ in stats])
        second = np.stack([s ** 2 + m ** 2 for m, s, _ in stats])
        mean = (n[:, None] * means).sum(0) / n.sum()
        var = (n[:, None] * second).sum(0) / n.sum() - mean ** 2
        self.mean: np.ndarray = mean.astype(np.float32)
        self.std: np.ndarray = np.maximum(np.sqrt(np.maximum(var, 0)), STD_FLOOR).astype(np.float32)
        self.motion_dim: int = int(self.mean.shape[0])
        self.template: np.ndarray | None = None
        if self.kind == "vertex":
            self.template = read_clip(self.files[0]).get("template")
        self._cache: dict[int, dict] | None = {} if cache else None
        self._draws: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.files)

    def _clip(self, i: int) -> dict:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        clip = read_clip(self.files[i])
        if clip["motion"].shape[-1] != self.motion_dim:
            raise DataError(f"{self.files[i]}: motion has {clip['motion'].shape[-1]} channels, the dataset "
                            f"has {self.motion_dim}")
        if self._cache is not None:
            self._cache[i] = clip
        return clip

    def takes(self, i: int) -> np.ndarray:
        """Every recorded take of clip ``i``, whole and unaugmented: (K, T, D) raw motion (K = 1 for a (T, D) clip).

        Validation compares against all of them, so its number does not depend on which take a draw picked.
        """
        motion = self._clip(i)["motion"]
        return motion if motion.ndim == 3 else motion[None]

    def rng_for(self, i: int) -> np.random.Generator:
        """A generator for item ``i`` that changes on every draw (epochs differ) yet is reproducible per seed."""
        draw = self._draws.get(i, 0)
        self._draws[i] = draw + 1
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        return np.random.default_rng([self.seed, i, draw, worker])

    def __getitem__(self, i: int) -> dict:
        if i < 0:
            i += len(self)
        clip = self._clip(i)
        rng = self.rng_for(i)
        motion = clip["motion"]
        if motion.ndim == 3:
            motion = motion[int(rng.integers(motion.shape[0]))]  # (T, D), one take
        audio = clip["audio"]
        T = motion.shape[0]
        if self.window is not None:
            W = int(round(rng.uniform(*self.window) * FPS))
            W = max(1, min(W, T))
            s = int(rng.integers(0, T - W + 1))
            a0 = int(round(s * SAMPLE_RATE / FPS))
            a1 = int(round((s + W) * SAMPLE_RATE / FPS))
            audio = audio[a0:a1]
            if len(audio) < a1 - a0:  # the last frame may reach past the final sample
                audio = np.pad(audio, (0, a1 - a0 - len(audio)))
            motion = motion[s:s + W]
        if self.augment:
            from diffusiontalker.data.augment import augment_audio

            audio = augment_audio(audio, rng)
        return {
            "audio": torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
            "motion": torch.from_numpy(np.ascontiguousarray(motion, dtype=np.float32)),
            "speaker": torch.tensor(self.speaker_to_index.get(clip["speaker"], -1), dtype=torch.long),
            "emotion": torch.tensor(self.emotion_to_index.get(str(clip.get("emotion", "")), -1), dtype=torch.long),
            "num_frames": int(motion.shape[0]),
            "name": self.files[i].stem,
        }


def collate(batch: list[dict]) -> dict:
    """Pad a list of items to a batch: audio (B, Nmax), motion (B, Tmax, D) zero-padded; mask True = valid frame."""
    if not batch:
        raise DataError("cannot collate an empty batch")
    B = len(batch)
    n_max = max(int(b["audio"].shape[0]) for b in batch)
    t_max = max(int(b["motion"].shape[0]) for b in batch)
    D = int(batch[0]["motion"].shape[1])
    audio = torch.zeros(B, n_max, dtype=torch.float32)  # (B, Nmax)
    motion = torch.zeros(B, t_max, D, dtype=torch.float32)  # (B, Tmax, D)
    mask = torch.zeros(B, t_max, dtype=torch.bool)  # (B, Tmax)
    for j, b in enumerate(batch):
        n, t = int(b["audio"].shape[0]), int(b["motion"].shape[0])
        audio[j, :n] = b["audio"]
        motion[j, :t] = b["motion"]
        mask[j, :t] = True
    return {
        "audio": audio,
        "audio_lengths": torch.tensor([int(b["audio"].shape[0]) for b in batch], dtype=torch.long),
        "motion": motion,
        "mask": mask,
        "speaker": torch.stack([torch.as_tensor(b["speaker"], dtype=torch.long) for b in batch]),
        "emotion": torch.stack([torch.as_tensor(b.get("emotion", -1), dtype=torch.long) for b in batch]),
        "num_frames": torch.tensor([int(b["num_frames"]) for b in batch], dtype=torch.long),
        "names": [str(b["name"]) for b in batch],
    }


def write_meta(root: str | os.PathLike, **meta) -> Path:
    """Write ROOT/meta.json (kind, fps, sample_rate, names, speakers, heldout_speakers, source, ...)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    meta.setdefault("fps", FPS)
    meta.setdefault("sample_rate", SAMPLE_RATE)
    meta.setdefault("heldout_speakers", [])
    if meta.get("kind") not in KINDS:
        raise DataError(f"meta kind must be one of {list(KINDS)}, got {meta.get('kind')!r}")
    p = root / "meta.json"
    p.write_text(json.dumps(meta, indent=2))
    return p


def align_clip(audio: np.ndarray, motion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Trim audio (N,) and motion (..., T, D) to their common duration so that num_frames(len(audio)) == T."""
    T = min(motion.shape[-2], int(len(audio) * FPS // SAMPLE_RATE))
    if T < 1:
        raise DataError(f"audio ({len(audio)} samples) and motion ({motion.shape[-2]} frames) do not overlap")
    n = int(round(T * SAMPLE_RATE / FPS))
    audio = audio[:n]
    if len(audio) < n:
        audio = np.pad(audio, (0, n - len(audio)))
    return audio, motion[..., :T, :]


def split_counts(n: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> tuple[int, int, int]:
    """Sizes of train/val/test for ``n`` items (val and test get at least one item each when n >= 3)."""
    if n < 3:
        return n, 0, 0
    n_val = max(1, int(round(fractions[1] * n)))
    n_test = max(1, int(round(fractions[2] * n)))
    return n - n_val - n_test, n_val, n_test
