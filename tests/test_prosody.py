"""Prosody measurements (YIN f0, pace, dynamics) and emotion heads that hear them: the refit of a trained ladder,
training from scratch, and the pipeline's reading of a clip's emotion from its waveform."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import speechlike

from diffusiontalker.audio import SAMPLE_RATE
from diffusiontalker.checkpoint import load_checkpoint
from diffusiontalker.config import override, preset
from diffusiontalker.denoiser import Denoiser
from diffusiontalker.errors import ConfigError, DiffusionTalkerError
from diffusiontalker.prosody import LOG_F0_REF, NUM_PROSODY, PROSODY_NAMES, clip_prosody, prosody_features, yin


def tone(f0: float, seconds: float = 1.0, harmonics: int = 5) -> torch.Tensor:
    t = torch.arange(int(seconds * SAMPLE_RATE), dtype=torch.float64) / SAMPLE_RATE
    return sum(torch.sin(2 * math.pi * f0 * k * t) / k for k in range(1, harmonics + 1)).float() * 0.2


@pytest.mark.parametrize("f0", [85.0, 140.0, 233.0, 350.0])
def test_yin_finds_the_pitch_of_a_harmonic_tone(f0):
    hz, aperiodicity, level = yin(tone(f0))
    assert hz.shape == aperiodicity.shape == level.shape == (1 + (SAMPLE_RATE // 2 - 400) // 160,)
    assert torch.median(hz).item() == pytest.approx(f0, rel=0.005)
    assert float(aperiodicity.max()) < 0.05  # periodic everywhere


def test_noise_is_unvoiced_and_the_level_is_in_decibels():
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32))
    _, aperiodicity, _ = yin(noise)
    assert float(aperiodicity.min()) > 0.25  # no frame passes the voicing test
    quiet, loud = yin(tone(200.0))[2], yin(tone(200.0) * 10.0)[2]
    torch.testing.assert_close(loud - quiet, torch.full_like(quiet, 20.0), atol=0.01, rtol=0)  # x10 = +20 dB
    assert float(clip_prosody(noise)[PROSODY_NAMES.index("voiced_fraction")]) == 0.0


def test_prosody_ignores_gain_and_padding_and_tracks_pitch():
    audio = torch.from_numpy(speechlike(2.0, f0=150.0))
    base = clip_prosody(audio)
    assert base.shape == (NUM_PROSODY,) and torch.isfinite(base).all()
    torch.testing.assert_close(clip_prosody(audio * 0.05), base, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(clip_prosody(audio * 4.0), base, atol=1e-3, rtol=1e-3)
    assert float(base[PROSODY_NAMES.index("logf0_p50")]) == pytest.approx(math.log(150.0) - LOG_F0_REF, abs=0.01)
    up = clip_prosody(torch.from_numpy(speechlike(2.0, f0=200.0)))
    p50 = PROSODY_NAMES.index("logf0_p50")
    assert float(up[p50] - base[p50]) == pytest.approx(math.log(200 / 150), abs=0.01)
    # a batch with padding gives each clip's own vector
    short = torch.from_numpy(speechlike(1.2, f0=200.0, seed=3))
    batch = torch.zeros(2, audio.numel())
    batch[0], batch[1, : short.numel()] = audio, short
    feats = prosody_features(batch, torch.tensor([audio.numel(), short.numel()]))
    torch.testing.assert_close(feats, torch.stack([base, clip_prosody(short)]))


def test_long_audio_is_analysed_in_blocks_with_the_same_result():
    audio = torch.from_numpy(speechlike(3.0, f0=120.0))
    whole, blocks = yin(audio), yin(audio, block=7)
    for a, b in zip(whole, blocks):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("samples", [0, 10, SAMPLE_RATE])
def test_silence_and_tiny_clips_give_zeros(samples):
    out = clip_prosody(torch.zeros(samples))
    assert out.shape == (NUM_PROSODY,) and not out.any()


def test_a_prosody_head_needs_prosody_and_an_explicit_emotion():
    cfg = override(preset("tiny"), model__identity_names=["a", "b"], model__emotion_head=True,
                   model__emotion_names=["neutral", "happy"], model__emotion_features="prosody").model
    den = Denoiser(cfg)
    assert tuple(den.prosody_mean.shape) == (NUM_PROSODY,) and "prosody_std" in den.state_dict()
    B, T = 2, 12
    audio, mask = torch.randn(B, T, cfg.audio_dim), torch.ones(B, T, dtype=torch.bool)
    ident = torch.randn(B, cfg.identity_dim)
    with pytest.raises(ValueError, match="pass prosody="):
        den.emotion_logits(audio, mask, ident)
    prosody = torch.randn(B, NUM_PROSODY)
    logits = den.emotion_logits(audio, mask, ident, prosody)
    assert logits.shape == (B, 2)
    assert not torch.allclose(logits, den.emotion_logits(audio, mask, ident, prosody + 1.0))
    den.set_prosody_normalisation(prosody.mean(0), torch.full((NUM_PROSODY,), 2.0))
    assert not torch.allclose(logits, den.emotion_logits(audio, mask, ident, prosody))
    x, t = torch.randn(B, T, cfg.motion_dim), torch.tensor([3, 7])
    with pytest.raises(ValueError, match="pass emotion="):
        den(x, t, audio, ident, mask)
    assert den(x, t, audio, ident, mask, emotion=torch.softmax(logits, -1)).shape == x.shape
    with pytest.raises(ConfigError, match="emotion_features='pitch' is not valid"):
        override(preset("tiny"), model__emotion_features="pitch")


@pytest.fixture(scope="module")
def emotional_ladder(tmp_path_factory):
    """A tiny teacher with a (pooled-statistics) emotion head, trained briefly on labelled clips and distilled."""
    from test_training import fabricate_emotional_clips

    from train import distill as distill_script
    from train import train_teacher

    root = tmp_path_factory.mktemp("prosody")
    data = fabricate_emotional_clips(root / "data")
    run = root / "run"
    assert train_teacher.main(["--data", str(data), "--preset", "tiny", "--out", str(run), "--quiet",
                               "--iterations", "2", "--set", "model__emotion_head=true", "diffusion__steps=4"]) == 0
    ladder = root / "ladder"
    assert distill_script.main(["--teacher", str(run / "teacher"), "--data", str(data), "--out", str(ladder),
                                "--target", "2", "--iterations-per-round", "1", "--quiet"]) == 0
    return data, ladder


def test_fit_emotion_head_refits_every_rung_and_the_pipeline_hears_prosody(emotional_ladder, tmp_path, capsys):
    from diffusiontalker.pipeline import Pipeline
    from train import fit_emotion_head

    data, ladder = emotional_ladder
    out = tmp_path / "refit"
    assert fit_emotion_head.main(["--ladder", str(ladder), "--data", str(data), "--out", str(out),
                                  "--epochs", "300"]) == 0
    printed = capsys.readouterr().out
    assert "teacher: train accuracy" in printed and "val accuracy" in printed
    assert json.loads((out / "ladder.json").read_text()) == json.loads((ladder / "ladder.json").read_text())
    summary = json.loads((out / "emotion_refit.json").read_text())
    assert [r["rung"] for r in summary["rungs"]] == ["teacher", "student-2"]
    for rung in ("teacher", "student-2"):
        old, _, _ = load_checkpoint(ladder / rung)
        new, cfg, meta = load_checkpoint(out / rung)
        assert cfg.model.emotion_features == "prosody" and meta["emotion_refit"]["clips"] == 16  # 8 + 8 augmented
        # the fabricated happy clips are pitched up 30 %: the head separates the training clips
        assert meta["emotion_refit"]["train_acc"] == 1.0
        # everything but the head is the old rung's
        for name, value in old.state_dict().items():
            if not name.startswith("denoiser.emotion_head."):
                torch.testing.assert_close(new.state_dict()[name], value)
        assert float(new.denoiser.prosody_std.min()) > 0 and new.denoiser.prosody_mean.abs().sum() > 0

    pipe = Pipeline.from_pretrained(out)
    happy_voice = speechlike(2.0, f0=156.0, seed=11)  # ava's pitch (120 Hz) x 1.3
    [anim] = pipe(happy_voice, steps=2, sr=SAMPLE_RATE)
    assert anim.emotion.startswith("auto:") and sum(anim.emotion_scores.values()) == pytest.approx(1.0)
    feats, mask = pipe.encode(happy_voice.astype(np.float32), 2)
    with pytest.raises(DiffusionTalkerError, match="pass wav="):
        pipe.read_emotion(feats, mask, 2)
    assert pipe.read_emotion(feats, mask, 2, wav=happy_voice) == anim.emotion_scores

    from train.evaluate import evaluate

    rows = evaluate(out, data, seeds=1, identity_diversity=False, teacher_ddim=[2], true_emotion=[2])["rows"]
    assert 0 <= rows["student-2"]["emotion_acc"] <= 1 and 0 <= rows["teacher-DDIM-2"]["emotion_acc"] <= 1

    # the export keeps the refit on the card and beside the weights
    from train import export_default

    exported = tmp_path / "exported"
    assert export_default.main(["--run", str(tmp_path / "norun"), "--ladder", str(out), "--data", str(data),
                                "--out", str(exported), "--steps", "4", "2"]) == 0
    card = (exported / "student-2" / "MODEL_CARD.md").read_text()
    assert "refitted on prosody" in card and "the clip's prosody" in card
    assert json.loads((exported / "emotion_refit.json").read_text()) == summary
    assert load_checkpoint(exported / "student-2")[1].model.emotion_features == "prosody"

    # an existing output is never written over
    assert fit_emotion_head.main(["--ladder", str(ladder), "--data", str(data), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_fit_emotion_head_refuses_a_model_without_a_head_and_unlabelled_data(emotional_ladder, tiny_ladder,
                                                                             tmp_path, capsys):
    from diffusiontalker.arkit import ARKIT_52
    from diffusiontalker.data.clips import write_clip, write_meta
    from train import fit_emotion_head

    data, ladder = emotional_ladder
    assert fit_emotion_head.main(["--ladder", str(tiny_ladder), "--data", str(data),
                                  "--out", str(tmp_path / "a")]) == 2
    assert "has no emotion head" in capsys.readouterr().err
    # data that declares no emotion labels (every clip file still says "neutral")
    plain = tmp_path / "plain"
    write_clip(plain / "train" / "ava_0.npz", audio=speechlike(1.0), motion=np.zeros((30, 52), np.float32),
               kind="blendshape", names=list(ARKIT_52), speaker="ava")
    write_meta(plain, kind="blendshape", names=list(ARKIT_52), speakers=["ava"], source="test")
    assert fit_emotion_head.main(["--ladder", str(ladder), "--data", str(plain), "--out", str(tmp_path / "b")]) == 2
    assert "declares 0 emotion labels" in capsys.readouterr().err
    # labels the ladder does not know
    write_meta(plain, kind="blendshape", names=list(ARKIT_52), speakers=["ava"], source="test",
               emotions=["neutral", "bored"])
    write_clip(plain / "train" / "ava_1.npz", audio=speechlike(1.0, seed=2), motion=np.zeros((30, 52), np.float32),
               kind="blendshape", names=list(ARKIT_52), speaker="ava", emotion="bored")
    assert fit_emotion_head.main(["--ladder", str(ladder), "--data", str(plain), "--out", str(tmp_path / "b"),
                                  "--val-split", ""]) == 2
    assert "['bored']" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_teacher_trains_and_distils_with_a_prosody_head(tmp_path):
    """From scratch: the head's normalisation comes from the training clips; distillation keeps the prosody head
    (teacher and student hear the same measurements)."""
    from test_training import fabricate_emotional_clips

    from train import distill as distill_script
    from train import train_teacher

    data = fabricate_emotional_clips(tmp_path / "data")
    run = tmp_path / "run"
    assert train_teacher.main(["--data", str(data), "--preset", "tiny", "--out", str(run), "--quiet",
                               "--iterations", "2", "--set", "model__emotion_head=true",
                               "model__emotion_features=prosody", "diffusion__steps=4", "train__eval_every=2"]) == 0
    teacher, cfg, _ = load_checkpoint(run / "teacher")
    assert cfg.model.emotion_features == "prosody"
    assert float(teacher.denoiser.prosody_std.min()) > 0 and teacher.denoiser.prosody_mean.abs().sum() > 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any("val_emotion_acc" in r for r in log)
    ladder = tmp_path / "ladder"
    assert distill_script.main(["--teacher", str(run / "teacher"), "--data", str(data), "--out", str(ladder),
                                "--target", "2", "--iterations-per-round", "1", "--quiet"]) == 0
    student, scfg, _ = load_checkpoint(ladder / "student-2")
    assert scfg.model.emotion_features == "prosody"
    torch.testing.assert_close(student.denoiser.prosody_mean, teacher.denoiser.prosody_mean)


def test_a_one_identity_model_hears_every_clip_against_its_identity(tmp_path):
    """The no-identity ablation pools every speaker into one identity; its head is refitted the same way."""
    from test_training import fabricate_emotional_clips

    from train import fit_emotion_head, train_teacher

    data = fabricate_emotional_clips(tmp_path / "data")
    run = tmp_path / "run"
    assert train_teacher.main(["--data", str(data), "--preset", "tiny", "--out", str(run), "--quiet",
                               "--iterations", "1", "--single-identity", "--set", "model__emotion_head=true",
                               "diffusion__steps=4"]) == 0
    assert fit_emotion_head.main(["--ladder", str(run / "teacher"), "--data", str(data), "--out",
                                  str(tmp_path / "refit"), "--epochs", "200"]) == 0
    model, cfg, meta = load_checkpoint(tmp_path / "refit")  # a plain checkpoint in, a plain checkpoint out
    assert len(model.identity.names) == 1 and cfg.model.emotion_features == "prosody"
    assert meta["emotion_refit"]["train_acc"] == 1.0
