"""The emotion probe: a voice change that marks an emotion is found; its absence and bad input are reported."""

from __future__ import annotations

import json

import numpy as np
from conftest import speechlike

from diffusiontalker.arkit import ARKIT_52
from diffusiontalker.audio import num_frames
from diffusiontalker.data.clips import write_clip
from train import probe_emotion


def _clips(root, per_split=None, emotions=("neutral", "happy")):
    """Two speakers (low and high voice); 'happy' raises the speaker's pitch by 15%."""
    per_split = per_split or {"train": 16, "val": 8}
    for split, n in per_split.items():
        for i in range(n):
            spk, emo = ("ann", "bob")[i % 2], emotions[(i // 2) % len(emotions)]
            f0 = (110.0 if spk == "ann" else 190.0) * (1.15 if emo == "happy" else 1.0) * (1 + 0.01 * (i % 3))
            audio = speechlike(1.5, f0=f0, seed=100 * len(split) + i)
            motion = np.zeros((num_frames(len(audio)), 52), np.float32)
            write_clip(root / split / f"{spk}_{split}_{i}.npz", audio=audio, motion=motion, kind="blendshape",
                       names=list(ARKIT_52), speaker=spk, emotion=emo)
    return root


def test_probe_hears_a_pitch_marked_emotion(tmp_path, capsys):
    data = _clips(tmp_path / "clips")
    out = tmp_path / "probe.json"
    assert probe_emotion.main(["--data", str(data), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    by = {tuple(r["features"]): r for r in doc["results"]}
    assert set(by) == {("spectrum", "prosody"), ("spectrum",), ("prosody",)}
    prosody = by[("prosody",)]
    assert prosody["majority_accuracy"] == 0.5 and prosody["accuracy"] >= 0.85
    assert set(prosody["recall"]) == {"neutral", "happy"} and prosody["clips"] == {"train": 16, "test": 8}
    assert "accuracy" in capsys.readouterr().out


def test_probe_refuses_unlabelled_or_single_emotion_data(tmp_path, capsys):
    assert probe_emotion.main(["--data", str(tmp_path / "nothing")]) == 2
    assert "no clips" in capsys.readouterr().err
    data = _clips(tmp_path / "one", {"train": 4, "val": 2}, emotions=("neutral",))
    assert probe_emotion.main(["--data", str(data)]) == 2
    assert "one emotion only" in capsys.readouterr().err
