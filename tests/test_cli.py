"""Command line: generate writes .npy + .json that read back; user mistakes exit 2 with one line; info prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffusiontalker.arkit import ARKIT_52
from diffusiontalker.cli import _parse_identity, main

REPO = Path(__file__).resolve().parents[1]


def generate(wav: Path, ckpt: Path, out: Path, *extra: str) -> int:
    return main(["generate", str(wav), "--checkpoint", str(ckpt), "--out", str(out), "--quiet", *extra])


def test_generate_writes_npy_and_sidecar(tmp_path, speech_wav, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    assert main(["generate", str(speech_wav), "--checkpoint", str(tiny_checkpoint), "--samples", "2",
                 "--seed", "4", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["speech_seed4.json", "speech_seed4.npy", "speech_seed5.json",
                                                     "speech_seed5.npy"]
    assert "speech_seed4.npy" in stdout and "45 frames" in stdout
    values = {}
    for seed in (4, 5):
        arr = np.load(out / f"speech_seed{seed}.npy")
        meta = json.loads((out / f"speech_seed{seed}.json").read_text())
        assert arr.shape == (45, 52) and arr.dtype == np.float32
        assert meta["shape"] == [45, 52] and meta["names"] == list(ARKIT_52)
        assert meta["seed"] == seed and meta["steps"] == 8 and meta["fps"] == 30 and meta["kind"] == "blendshape"
        assert meta["identity"].startswith("auto:") and set(meta["identity_scores"]) == {"ava", "ben", "cy"}
        assert meta["audio"] == str(speech_wav) and meta["checkpoint"] == str(tiny_checkpoint)
        values[seed] = arr
    assert not np.array_equal(values[4], values[5])
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_single_sample_name_and_identity_choice(tmp_path, speech_wav, tiny_checkpoint):
    out = tmp_path / "out"
    assert generate(speech_wav, tiny_checkpoint, out, "--identity", "ben", "--steps", "8") == 0
    assert json.loads((out / "speech.json").read_text())["identity"] == "ben"
    assert generate(speech_wav, tiny_checkpoint, out, "--identity", "ava=0.7,cy=0.3", "--overwrite") == 0
    assert json.loads((out / "speech.json").read_text())["identity"].startswith("mix:")


def test_same_seed_same_file(tmp_path, speech_wav, tiny_checkpoint):
    assert generate(speech_wav, tiny_checkpoint, tmp_path / "a", "--seed", "3") == 0
    assert generate(speech_wav, tiny_checkpoint, tmp_path / "b", "--seed", "3") == 0
    assert np.array_equal(np.load(tmp_path / "a" / "speech.npy"), np.load(tmp_path / "b" / "speech.npy"))


def test_existing_output_needs_overwrite(tmp_path, speech_wav, tiny_checkpoint, capsys):
    out = tmp_path / "out"
    assert generate(speech_wav, tiny_checkpoint, out) == 0
    before = (out / "speech.npy").read_bytes()
    capsys.readouterr()
    assert generate(speech_wav, tiny_checkpoint, out, "--seed", "9") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and "exists; pass --overwrite" in err
    assert (out / "speech.npy").read_bytes() == before  # untouched
    assert generate(speech_wav, tiny_checkpoint, out, "--seed", "9", "--overwrite") == 0
    assert (out / "speech.npy").read_bytes() != before
    assert json.loads((out / "speech.json").read_text())["seed"] == 9


@pytest.mark.parametrize("content", [b"", b"not audio" * 100])
def test_bad_audio_exits_2(tmp_path, tiny_checkpoint, capsys, content):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    assert generate(bad, tiny_checkpoint, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "bad.wav" in err
    assert not list((tmp_path / "out").iterdir())


def test_missing_audio_and_checkpoint_exit_2(tmp_path, speech_wav, tiny_checkpoint, capsys):
    assert generate(tmp_path / "missing.wav", tiny_checkpoint, tmp_path / "out") == 2
    assert "audio file not found" in capsys.readouterr().err
    assert generate(speech_wav, tmp_path / "no_ckpt", tmp_path / "out") == 2
    assert "checkpoint directory not found" in capsys.readouterr().err


def test_bad_steps_and_identity_exit_2(tmp_path, speech_wav, tiny_checkpoint, capsys):
    assert generate(speech_wav, tiny_checkpoint, tmp_path / "o", "--steps", "3") == 2
    assert "choose one of [8]" in capsys.readouterr().err
    assert generate(speech_wav, tiny_checkpoint, tmp_path / "o", "--identity", "zed") == 2
    assert "unknown identity 'zed'" in capsys.readouterr().err
    assert generate(speech_wav, tiny_checkpoint, tmp_path / "o", "--identity", "ava=lots") == 2
    assert "bad identity mix" in capsys.readouterr().err


def test_parse_identity():
    assert _parse_identity("auto") == "auto"
    assert _parse_identity("none") is None
    assert _parse_identity("ava") == "ava"
    assert _parse_identity("ava=0.7, ben=0.3") == {"ava": 0.7, "ben": 0.3}


def test_many_files(tmp_path, tiny_checkpoint):
    from conftest import speechlike

    from diffusiontalker.audio import save_wav

    wavs = [save_wav(tmp_path / f"clip{i}.wav", speechlike(0.5 + 0.25 * i, seed=i)) for i in range(3)]
    out = tmp_path / "out"
    assert main(["generate", *map(str, wavs), "--checkpoint", str(tiny_checkpoint), "--out", str(out),
                 "--quiet"]) == 0
    assert [np.load(out / f"clip{i}.npy").shape[0] for i in range(3)] == [15, 22, 30]


def test_info_prints_the_config(tiny_checkpoint, tiny_ladder, capsys):
    assert main(["info", str(tiny_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "8 steps" in out and "blendshape" in out and "encoder mel" in out and "'ava', 'ben', 'cy'" in out
    assert main(["info", str(tiny_ladder), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("steps, blendshape") == 4
    doc = json.loads(out[out.index("{"):])
    assert doc["steps"] == [1, 2, 4, 8] and doc["config"]["diffusion"]["steps"] == 8
    assert doc["config"]["model"]["identity_names"] == ["ava", "ben", "cy"]


def test_info_on_a_missing_checkpoint(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nothing")]) == 2
    assert "checkpoint directory not found" in capsys.readouterr().err


def test_real_subprocess(tmp_path, speech_wav, tiny_checkpoint):
    out = tmp_path / "out"
    env = os.environ | {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "diffusiontalker", "generate", str(speech_wav), "--checkpoint",
                           str(tiny_checkpoint), "--samples", "2", "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for seed in (0, 1):
        assert np.load(out / f"speech_seed{seed}.npy").shape == (45, 52)
        assert json.loads((out / f"speech_seed{seed}.json").read_text())["seed"] == seed


def test_emotion_by_name_and_its_errors(tmp_path, speech_wav, tiny_checkpoint, capsys):
    """--emotion picks a learned emotion (recorded in the sidecar); auto reads it; a model without an emotion head,
    or an emotion it does not know, ends with exit 2 and a hint."""
    from conftest import make_checkpoint

    emo = make_checkpoint(tmp_path / "emo", emotions=["neutral", "happy"])
    assert generate(speech_wav, emo, tmp_path / "a", "--emotion", "happy") == 0
    meta = json.loads((tmp_path / "a" / f"{speech_wav.stem}.json").read_text())
    assert meta["emotion"] == "happy" and set(meta["emotion_scores"]) == {"neutral", "happy"}
    assert generate(speech_wav, emo, tmp_path / "b") == 0
    assert json.loads((tmp_path / "b" / f"{speech_wav.stem}.json").read_text())["emotion"].startswith("auto:")
    assert generate(speech_wav, emo, tmp_path / "c", "--emotion", "happy=0.5,neutral=0.5") == 0
    assert json.loads((tmp_path / "c" / f"{speech_wav.stem}.json").read_text())["emotion"] == (
        "mix: 0.5×happy + 0.5×neutral")
    capsys.readouterr()
    assert generate(speech_wav, emo, tmp_path / "d", "--emotion", "sad") == 2
    assert "unknown emotion 'sad'" in capsys.readouterr().err
    assert generate(speech_wav, tiny_checkpoint, tmp_path / "e", "--emotion", "happy") == 2
    assert "no emotion head" in capsys.readouterr().err
