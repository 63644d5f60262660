"""VOCASET loader on fabricated raw/processed layouts, and the restricted unpickler refusing hostile pickles."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from diffusiontalker.audio import SAMPLE_RATE, num_frames, save_wav
from diffusiontalker.data import safe_pickle
from diffusiontalker.data.clips import ClipDataset, read_clip
from diffusiontalker.data.vocaset import (
    TEST_SUBJECTS,
    TRAIN_SUBJECTS,
    VAL_SUBJECTS,
    prepare_vocaset,
    read_vertex_indices,
    split_of,
)
from diffusiontalker.errors import DataError

V = 10
SUBJECTS = (TRAIN_SUBJECTS[0], VAL_SUBJECTS[0], TEST_SUBJECTS[1], "FaceTalk_999999_00000_TA")
SENTENCES = (1, 2, 21, 22)


def _template(s: int) -> np.ndarray:
    return (np.arange(V * 3, dtype=np.float32).reshape(V, 3) + 100 * s) / 10


def _verts(s: int, q: int, T60: int) -> np.ndarray:
    """Template + an offset that encodes the 60 fps frame index (to check decimation and offsets)."""
    f = np.arange(T60, dtype=np.float32)[:, None, None]
    return _template(s)[None] + 0.001 * f + 0.01 * q + np.zeros((1, V, 3), np.float32)


def _audio(seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (8000 * np.sin(2 * np.pi * 150 * t)).astype(np.int16)


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vocaset_raw")
    rows, index, audio = [], {}, {}
    for s, subj in enumerate(SUBJECTS):
        index[subj], audio[subj] = {}, {}
        for q in SENTENCES:
            seq = f"sentence{q:02d}"
            T60 = 60 + 6 * q  # 1 s + a little
            v = _verts(s, q, T60)
            frames = list(range(1, T60 + 1))
            np.random.default_rng(q).shuffle(frames)  # dict order must not matter: frames are sorted by number
            index[subj][seq] = {f: len(rows) + f - 1 for f in frames}
            rows.extend(v)
            audio[subj][seq] = {"audio": _audio(T60 / 60, 22000), "sample_rate": 22000}
    np.save(root / "data_verts.npy", np.stack(rows))
    for name, obj in (("subj_seq_to_idx.pkl", index), ("raw_audio_fixed.pkl", audio),
                      ("templates.pkl", {subj: _template(s) for s, subj in enumerate(SUBJECTS)})):
        with open(root / name, "wb") as fh:
            pickle.dump(obj, fh, protocol=2)  # the release's pickles are protocol-2 era
    return root


def test_standard_split_rules():
    assert split_of(TRAIN_SUBJECTS[3], 1) == "train" and split_of(TRAIN_SUBJECTS[3], 40) == "train"
    assert split_of(VAL_SUBJECTS[1], 20) is None and split_of(VAL_SUBJECTS[1], 21) == "val"
    assert split_of(TEST_SUBJECTS[0], 40) == "test" and split_of("someone", 5) is None
    assert len(TRAIN_SUBJECTS) == 8 and len(VAL_SUBJECTS) == 2 and len(TEST_SUBJECTS) == 2


def _check_output(out, layout):
    meta = json.loads((out / "meta.json").read_text())
    assert meta["kind"] == "vertex" and meta["names"] is None and meta["layout"] == layout
    assert meta["speakers"] == [TRAIN_SUBJECTS[0]]
    assert meta["heldout_speakers"] == sorted([VAL_SUBJECTS[0], TEST_SUBJECTS[1]])
    names = {p.parent.name: set() for p in out.glob("*/*.npz")}
    for p in out.glob("*/*.npz"):
        names[p.parent.name].add(p.stem)
    assert names["train"] == {f"{TRAIN_SUBJECTS[0]}_sentence{q:02d}" for q in SENTENCES}
    assert names["val"] == {f"{VAL_SUBJECTS[0]}_sentence{q:02d}" for q in (21, 22)}
    assert names["test"] == {f"{TEST_SUBJECTS[1]}_sentence{q:02d}" for q in (21, 22)}
    c = read_clip(out / "val" / f"{VAL_SUBJECTS[0]}_sentence21.npz")
    T = c["motion"].shape[0]
    assert T == (60 + 6 * 21) // 2 and num_frames(len(c["audio"])) == T
    np.testing.assert_allclose(c["template"], _template(1))
    # offsets from the subject's template, every second 60 fps frame
    expected = 0.001 * 2 * np.arange(T)[:, None] + 0.01 * 21
    np.testing.assert_allclose(c["motion"], np.repeat(expected, 3 * V, axis=1), atol=1e-5)
    ds = ClipDataset(out, "train", window=None)
    assert ds.kind == "vertex" and ds.motion_dim == 3 * V and ds.template.shape == (V, 3)


def test_prepare_raw_release(raw_root, tmp_path):
    lips = tmp_path / "lips.txt"
    lips.write_text("# lip vertices\n1\n2\n\n5\n")
    out = tmp_path / "voca"
    stats = prepare_vocaset(raw_root, out, lip_indices=str(lips), progress=False)
    assert stats["clips"] == 8 and stats["skipped"] == {"outside the standard split": 8}
    _check_output(out, "raw")
    assert json.loads((out / "meta.json").read_text())["lip_vertices_count"] == 3
    np.testing.assert_array_equal(read_vertex_indices(out / "lip_vertices.txt"), [1, 2, 5])


def test_prepare_processed_layout(raw_root, tmp_path):
    root = tmp_path / "processed"
    (root / "vertices_npy").mkdir(parents=True)
    (root / "wav").mkdir()
    (root / "templates.pkl").write_bytes((raw_root / "templates.pkl").read_bytes())
    for s, subj in enumerate(SUBJECTS):
        for q in SENTENCES:
            T60 = 60 + 6 * q
            np.save(root / "vertices_npy" / f"{subj}_sentence{q:02d}.npy", _verts(s, q, T60).reshape(T60, -1))
            save_wav(root / "wav" / f"{subj}_sentence{q:02d}.wav", _audio(T60 / 60, SAMPLE_RATE) / 32768.0)
    out = tmp_path / "voca2"
    prepare_vocaset(root, out, progress=False)
    _check_output(out, "processed")


def test_missing_dataset_is_explained(tmp_path):
    with pytest.raises(DataError, match="templates.pkl"):
        prepare_vocaset(tmp_path, tmp_path / "out", progress=False)


class _Hostile:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Hostile()
    evil.marker = marker
    data = pickle.dumps({"FaceTalk_x": evil}, protocol=2)
    with pytest.raises(DataError, match="refusing to unpickle"):
        safe_pickle.loads(data)
    assert not marker.exists()
    (tmp_path / "templates.pkl").write_bytes(data)
    (tmp_path / "vertices_npy").mkdir()
    with pytest.raises(DataError, match="refusing to unpickle"):
        prepare_vocaset(tmp_path, tmp_path / "out", progress=False)
    assert not marker.exists()
    with pytest.raises(DataError, match="refusing to unpickle builtins.eval"):
        safe_pickle.loads(b"cbuiltins\neval\n(S'1+1'\ntR.")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_safe_pickle_reads_numpy_arrays_and_containers(protocol):
    obj = {"a": np.arange(6, dtype=np.int16).reshape(2, 3), "b": [1.5, "x", (np.float32(2.0),)], "c": {3}}
    back = safe_pickle.loads(pickle.dumps(obj, protocol=protocol))
    np.testing.assert_array_equal(back["a"], obj["a"])
    assert back["b"][:2] == [1.5, "x"] and float(back["b"][2][0]) == 2.0 and back["c"] == {3}
