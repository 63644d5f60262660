"""The app's example clips: ``train.make_examples`` writes valid 16 kHz mono 16-bit wavs of 3–6 s, the same bytes
on every run, named after synthetic speakers of the training set (and a held-out voice); the committed ones are
small and are what the app lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import app
from diffusiontalker.audio import SAMPLE_RATE
from diffusiontalker.data.synthetic import make_speakers
from diffusiontalker.errors import DataError
from train import make_examples as mx

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "examples"


def _espeak_available() -> bool:
    try:
        from diffusiontalker.data.synthetic import Espeak

        Espeak.get()
    except DataError:
        return False
    return True


def _check_wav(path: Path) -> np.ndarray:
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (SAMPLE_RATE, 1, "PCM_16", "WAV")
    assert mx.MIN_S <= info.duration <= mx.MAX_S
    assert path.stat().st_size < 200_000
    audio, _ = sf.read(str(path), dtype="float32")
    lead = audio[: int(0.2 * SAMPLE_RATE)]
    assert np.abs(lead).max() < 1e-3  # starts in silence, so the face starts at rest
    assert np.sqrt(np.mean(audio**2)) > 0.01 and np.abs(audio).max() < 1.0  # speech, not clipped
    return audio


def test_examples_are_training_speakers_and_one_heldout_voice():
    train, held = make_speakers(10, heldout=2)  # the default model's data set (train/build_default.sh)
    names = [e.speaker for e in mx.EXAMPLES if not e.heldout]
    assert 3 <= len(mx.EXAMPLES) <= 4 and set(names) <= {s.name for s in train}
    assert [e.speaker for e in mx.EXAMPLES if e.heldout] == [held[0].name]
    assert [e.filename for e in mx.EXAMPLES][-1] == f"heldout_{held[0].name}.wav"
    specs = mx.example_specs()
    assert [s.speaker.voice for s in specs[:3]] == [s.voice for s in train[:3]]
    assert specs[-1].speaker.voice not in {s.voice for s in train}  # an unseen voice


def test_unknown_speaker_is_a_clear_error():
    with pytest.raises(DataError, match="no training synthetic speaker 'zed'; choose from"):
        mx.example_specs((mx.Example("zed", "hi"),))


def test_make_examples_writes_valid_wavs_deterministically(tmp_path):
    if not _espeak_available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    subset = mx.EXAMPLES[:1] + mx.EXAMPLES[-1:]  # one training voice, the held-out one: fast
    first = mx.make_examples(tmp_path / "a", subset)
    again = mx.make_examples(tmp_path / "b", subset)
    assert [p.name for p in first] == ["ava.wav", "heldout_quinn.wav"]
    for p, q in zip(first, again):
        _check_wav(p)
        assert p.read_bytes() == q.read_bytes()


def test_committed_examples_are_valid_and_listed_by_the_app():
    wavs = sorted(ASSETS.glob("*.wav"))
    assert [p.name for p in wavs] == sorted(e.filename for e in mx.EXAMPLES)
    for p in wavs:
        _check_wav(p)
    assert app.example_files() == [str(p) for p in wavs]
