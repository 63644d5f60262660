"""The common clip format: write/read round trip, windows aligned to audio, one take per item, collate masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffusiontalker.arkit import ARKIT_52
from diffusiontalker.audio import FPS, SAMPLE_RATE, num_frames
from diffusiontalker.data.augment import augment_audio
from diffusiontalker.data.clips import (
    ClipDataset,
    align_clip,
    collate,
    compute_norm,
    read_clip,
    write_clip,
    write_meta,
)
from diffusiontalker.errors import DataError


def _frame_coded_clip(seconds: float, takes: int = 3, D: int = 52):
    """Audio whose sample n holds the index of the frame it belongs to; motion[k, t, 0] = t, [k, t, 1] = k."""
    N = int(seconds * SAMPLE_RATE)
    T = num_frames(N)
    audio = np.floor((np.arange(N) + 0.5) * FPS / SAMPLE_RATE).astype(np.float32)
    motion = np.zeros((takes, T, D), np.float32)
    motion[:, :, 0] = np.arange(T)[None]
    motion[:, :, 1] = np.arange(takes)[:, None]
    return audio, motion


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "clips"
    write_meta(r, kind="blendshape", names=list(ARKIT_52), speakers=["ann", "bob"], source="test")
    for i, (spk, sec) in enumerate([("ann", 7.3), ("bob", 3.1), ("ann", 9.0), ("zed", 2.5)]):
        audio, motion = _frame_coded_clip(sec)
        write_clip(r / "train" / f"c{i}.npz", audio=audio, motion=motion, kind="blendshape", names=ARKIT_52,
                   speaker=spk, emotion="neutral")
    compute_norm(r)
    return r


def test_write_read_round_trip_without_pickle(tmp_path):
    audio, motion = _frame_coded_clip(1.0, takes=2)
    p = write_clip(tmp_path / "x" / "a.npz", audio=audio, motion=motion, kind="blendshape", names=ARKIT_52,
                   speaker="ann", text="hello", phone_names=np.array(["h", "@"]))
    with np.load(p, allow_pickle=False) as z:
        assert set(z.files) >= {"audio", "motion", "kind", "names", "speaker", "emotion"}
    c = read_clip(p)
    assert c["speaker"] == "ann" and c["emotion"] == "neutral" and c["text"] == "hello"
    np.testing.assert_array_equal(c["motion"], motion)
    assert list(c["names"]) == list(ARKIT_52)
    assert not list(tmp_path.glob("x/.*"))  # no temp file left behind


def test_write_clip_refuses_bad_clips(tmp_path):
    audio, motion = _frame_coded_clip(1.0, takes=1)
    with pytest.raises(DataError, match="frames"):
        write_clip(tmp_path / "a.npz", audio=audio, motion=motion[:, :-3], kind="blendshape", names=ARKIT_52,
                   speaker="a")
    with pytest.raises(DataError, match="template"):
        write_clip(tmp_path / "a.npz", audio=audio, motion=motion[0, :, :12], kind="vertex", speaker="a")
    with pytest.raises(DataError, match="pickling"):
        write_clip(tmp_path / "a.npz", audio=audio, motion=motion, kind="blendshape", names=ARKIT_52,
                   speaker="a", extra=np.array([{"x": 1}], dtype=object))
    with pytest.raises(DataError, match="not found"):
        read_clip(tmp_path / "missing.npz")


def test_windows_align_audio_and_motion(root):
    ds = ClipDataset(root, "train", window=(2.0, 6.0), seed=1)
    assert ds.speakers == ["ann", "bob"] and ds.speaker_to_index == {"ann": 0, "bob": 1}
    assert ds.motion_dim == 52 and ds.names == tuple(ARKIT_52) and ds.template is None
    for _ in range(6):
        for i in range(len(ds)):
            item = ds[i]
            T = item["num_frames"]
            assert item["motion"].shape == (T, 52) and num_frames(len(item["audio"])) == T
            assert 2 * FPS <= T <= 6 * FPS or len(read_clip(ds.files[i])["motion"][0]) == T
            s = int(item["motion"][0, 0])
            # the audio window starts in frame s and ends in frame s + T - 1 (zero padding past the end)
            assert int(item["audio"][0]) == s
            np.testing.assert_array_equal(item["motion"][:, 0].numpy(), np.arange(s, s + T))
    assert int(ds[3]["speaker"]) == -1  # "zed" is not a listed speaker


def test_one_take_is_drawn_per_item_and_draws_repeat_per_seed(root):
    ds = ClipDataset(root, "train", window=None, seed=0)
    takes = {int(ds[0]["motion"][0, 1]) for _ in range(30)}
    assert takes == {0, 1, 2}
    full = ds[0]
    assert full["num_frames"] == num_frames(int(7.3 * SAMPLE_RATE))
    a = [ClipDataset(root, "train", seed=5)[2]["motion"][0, 0] for _ in range(2)]
    assert a[0] == a[1]
    # every take at once (what validation compares against), untouched by windows and draws
    takes = ClipDataset(root, "train", window=(2.0, 3.0), seed=0).takes(1)
    assert takes.shape == (3, num_frames(int(3.1 * SAMPLE_RATE)), 52)
    np.testing.assert_array_equal(takes[:, 0, 1], [0, 1, 2])
    np.testing.assert_array_equal(takes[2, :, 0], np.arange(takes.shape[1]))


def test_collate_pads_and_masks(root):
    ds = ClipDataset(root, "train", window=(2.0, 4.0), seed=3)
    items = [ds[i] for i in range(4)]
    b = collate(items)
    B, Tmax = 4, max(it["num_frames"] for it in items)
    assert b["motion"].shape == (B, Tmax, 52) and b["mask"].shape == (B, Tmax) and b["mask"].dtype == torch.bool
    assert b["audio"].shape == (B, max(len(it["audio"]) for it in items))
    for j, it in enumerate(items):
        T = it["num_frames"]
        assert b["mask"][j, :T].all() and not b["mask"][j, T:].any()
        assert (b["motion"][j, T:] == 0).all() and int(b["audio_lengths"][j]) == len(it["audio"])
    assert b["speaker"].dtype == torch.long and b["num_frames"].tolist() == [it["num_frames"] for it in items]
    assert b["names"] == [it["name"] for it in items]


def test_norm_is_train_statistics_with_a_floor(root):
    with np.load(root / "norm.npz") as z:
        mean, std = z["mean"], z["std"]
    frames = np.concatenate([read_clip(f)["motion"].reshape(-1, 52) for f in sorted((root / "train").glob("*.npz"))])
    np.testing.assert_allclose(mean, frames.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std[:2], frames.std(0)[:2], rtol=1e-4)
    assert std[5] == pytest.approx(1e-3)  # constant channel floored
    ds = ClipDataset([root, root], "train", window=None)  # pooling two identical roots keeps the statistics
    np.testing.assert_allclose(ds.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(ds.std, std, rtol=1e-4)
    assert len(ds) == 8


def test_dataset_errors_are_actionable(tmp_path, root):
    with pytest.raises(DataError, match="meta.json"):
        ClipDataset(tmp_path / "nothing")
    with pytest.raises(DataError, match="splits present"):
        ClipDataset(root, "val")
    other = tmp_path / "v"
    write_meta(other, kind="vertex", names=None, speakers=[], source="test")
    with pytest.raises(DataError, match="mix"):
        ClipDataset([root, other])
    assert json.loads((root / "meta.json").read_text())["fps"] == FPS


def test_align_clip_trims_to_common_duration():
    audio = np.zeros(16000 * 2 + 100, np.float32)
    a, m = align_clip(audio, np.zeros((70, 3), np.float32))
    assert m.shape[0] == 60 and num_frames(len(a)) == 60
    a, m = align_clip(audio, np.zeros((40, 3), np.float32))
    assert m.shape[0] == 40 and num_frames(len(a)) == 40


def test_augment_keeps_length_and_range():
    rng = np.random.default_rng(0)
    t = np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
    speech = (0.5 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    outs = [augment_audio(speech, rng) for _ in range(20)]
    for y in outs:
        assert y.shape == speech.shape and y.dtype == np.float32
        assert np.all(np.isfinite(y)) and np.abs(y).max() <= 1.0
    gains = [np.abs(y).max() / np.abs(speech).max() for y in outs]
    assert max(gains) / min(gains) > 5  # loudness varies widely (±20 dB)
    a = augment_audio(speech, np.random.default_rng(9))
    b = augment_audio(speech, np.random.default_rng(9))
    np.testing.assert_array_equal(a, b)
