"""BEAT loader on fabricated takes: names mapped by name, 60→30 fps, 10 s clips, emotions, stratified split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffusiontalker.arkit import ARKIT_52, BEAT_51
from diffusiontalker.audio import SAMPLE_RATE, num_frames, save_wav
from diffusiontalker.data.beat import emotion_of_take, parse_take_name, prepare_beat, read_beat_json
from diffusiontalker.data.clips import ClipDataset, read_clip
from diffusiontalker.errors import DataError


def _code(name: str) -> float:
    """A distinct value per channel name, so a by-position mix-up shows."""
    return (ARKIT_52.index(name) + 1) / 100.0


def _write_take(folder, stem, seconds, shuffled_names):
    folder.mkdir(parents=True, exist_ok=True)
    T60 = int(seconds * 60)
    frames = []
    for f in range(T60):
        w = [_code(n) for n in shuffled_names]
        w[shuffled_names.index("jawOpen")] = f / 10000.0  # the 60 fps frame index, to check decimation
        frames.append({"time": f / 60.0, "weights": w, "rotation": [0, 0, 0]})
    (folder / f"{stem}.json").write_text(json.dumps({"names": shuffled_names, "frames": frames}))
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    save_wav(folder / f"{stem}.wav", 0.3 * np.sin(2 * np.pi * 200 * t), SAMPLE_RATE)


@pytest.fixture(scope="module")
def beat_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("beat")
    names = list(BEAT_51)
    np.random.default_rng(0).shuffle(names)
    for sid, who in ((2, "scott"), (4, "lawrence")):
        for take in range(1, 11):  # 10 neutral takes
            _write_take(root / f"{sid}_{who}", f"{sid}_{who}_0_{take}_{take}", 2.5, names)
        for take in range(65, 75):  # 8 happiness + 2 anger takes
            _write_take(root / f"{sid}_{who}", f"{sid}_{who}_0_{take}_{take}", 2.5, names)
    _write_take(root / "2_scott", "2_scott_0_3_99", 23.0, names)  # long: 10 s + 10 s + 3 s
    _write_take(root / "2_scott", "2_scott_1_5_5", 2.5, names)  # conversation: not language 0
    _write_take(root / "3_solomon", "3_solomon_0_1_1", 2.5, names)  # not a paper speaker
    return root


def test_names_and_emotions_parse():
    assert parse_take_name("2_scott_0_1_1") == (2, "scott", 0, 1)
    assert [emotion_of_take(t) for t in (0, 64, 65, 72, 73, 81, 87, 95, 103, 118)] == [
        "neutral", "neutral", "happiness", "happiness", "anger", "sadness", "contempt", "surprise", "fear",
        "disgust"]
    with pytest.raises(DataError):
        emotion_of_take(200)
    with pytest.raises(DataError, match="not a BEAT take name"):
        parse_take_name("scott")


def test_channels_are_mapped_by_name_not_position(beat_root):
    w = read_beat_json(beat_root / "2_scott" / "2_scott_0_1_1.json")
    assert w.shape == (150, 52)
    for j, n in enumerate(ARKIT_52):
        if n == "tongueOut":
            assert np.all(w[:, j] == 0)
        elif n != "jawOpen":
            assert np.allclose(w[:, j], _code(n)), n
    np.testing.assert_allclose(w[:, ARKIT_52.index("jawOpen")], np.arange(150) / 10000.0, atol=1e-7)


def test_prepare_beat_clips_fps_and_split(beat_root, tmp_path):
    out = tmp_path / "beat_clips"
    stats = prepare_beat(beat_root, out, speakers=[2, 4, 6, 8], progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["speakers"] == ["2_scott", "4_lawrence"] and meta["source"] == "beat" and meta["fps"] == 30
    assert stats["takes"] == 41 and stats["skipped_files"] == {"other language": 1, "other speaker": 1}
    # the long take gives 10 s + 10 s + 3 s clips, 60 fps frames decimated by two
    longs = sorted(out.glob("*/2_scott_0_3_99_*.npz"))
    assert len(longs) == 3
    clips = [read_clip(p) for p in longs]
    assert [c["motion"].shape[0] for c in clips] == [300, 300, 90]
    jaw = np.concatenate([c["motion"][:, ARKIT_52.index("jawOpen")] for c in clips])
    np.testing.assert_allclose(jaw, 2 * np.arange(690) / 10000.0, atol=1e-6)
    for c in clips:
        assert num_frames(len(c["audio"])) == c["motion"].shape[0] and c["emotion"] == "neutral"
    # stratified by (speaker, emotion): every group of 10 takes gives 8/1/1
    by_split: dict[str, dict] = {}
    for p in out.glob("*/*.npz"):
        c = read_clip(p)
        if "_3_99_" in p.name:
            continue
        key = (c["speaker"], c["emotion"])
        by_split.setdefault(p.parent.name, {}).setdefault(key, 0)
        by_split[p.parent.name][key] += 1
    for who in ("2_scott", "4_lawrence"):
        assert by_split["val"][(who, "neutral")] == 1 and by_split["test"][(who, "neutral")] == 1
        assert by_split["train"][(who, "neutral")] == 8
        assert by_split["train"][(who, "happiness")] == 6
        assert sum(by_split[s].get((who, "anger"), 0) for s in by_split) == 2
    ds = ClipDataset(out, "train", window=(2.0, 6.0))
    assert ds.names == tuple(ARKIT_52) and num_frames(len(ds[0]["audio"])) == ds[0]["num_frames"]
    # same seed, same split
    out2 = tmp_path / "again"
    prepare_beat(beat_root, out2, speakers=[2, 4], progress=False)
    assert sorted(p.relative_to(out2) for p in out2.glob("*/*.npz")) == sorted(
        p.relative_to(out) for p in out.glob("*/*.npz"))


def test_prepare_beat_explains_missing_data(tmp_path):
    with pytest.raises(DataError, match="no BEAT takes"):
        prepare_beat(tmp_path, tmp_path / "out", progress=False)
    bad = tmp_path / "2_scott"
    bad.mkdir()
    (bad / "2_scott_0_1_1.json").write_text(json.dumps({"names": ["jawOpen", "notAShape"], "frames": [
        {"weights": [0.1, 0.2]}]}))
    with pytest.raises(DataError, match="not ARKit"):
        read_beat_json(bad / "2_scott_0_1_1.json")
