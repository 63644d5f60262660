"""Pipeline: shapes, identities (auto / name / mix), steps, batching, vertex output, long audio in windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import IDENTITIES, make_checkpoint, speechlike

from diffusiontalker.animation import Animation
from diffusiontalker.arkit import ARKIT_52
from diffusiontalker.audio import SAMPLE_RATE, num_frames, save_wav
from diffusiontalker.checkpoint import load_checkpoint, save_checkpoint
from diffusiontalker.errors import AudioError, DiffusionTalkerError, IdentityError
from diffusiontalker.pipeline import Pipeline

SR = SAMPLE_RATE


def restyle(directory: Path, std: float = 0.05, audio_only: bool = False) -> Path:
    """Give a checkpoint's zero-initialised layers random weights (identity and timestep then matter); with
    ``audio_only`` the denoiser ignores its noisy input, so x0 is a smooth function of the audio alone."""
    model, cfg, meta = load_checkpoint(directory)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.denoiser.named_parameters():
            if "modulation" in name:
                p.normal_(0, 0.05)
        model.denoiser.output.weight.normal_(0, std)
        if audio_only:
            model.denoiser.input.weight[:, : cfg.model.motion_dim] = 0
    return save_checkpoint(model, cfg, directory, meta=meta)


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint) -> Pipeline:
    return Pipeline.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="module")
def styled(tmp_path_factory) -> Pipeline:
    """Identity conditioning has an effect in this checkpoint."""
    return Pipeline.from_pretrained(restyle(make_checkpoint(tmp_path_factory.mktemp("styled") / "c")))


@pytest.fixture(scope="module")
def ladder(tiny_ladder) -> Pipeline:
    return Pipeline.from_pretrained(tiny_ladder)


@pytest.mark.parametrize("seconds", [0.2, 1.0, 1.53])
def test_output_shape_and_metadata(pipe, seconds):
    wav = speechlike(seconds, seed=1)
    [anim] = pipe(wav, sr=SR)
    assert isinstance(anim, Animation)
    assert anim.values.shape == (num_frames(len(wav)), 52)
    assert anim.kind == "blendshape" and anim.fps == 30 and anim.names == ARKIT_52
    assert anim.values.dtype == np.float32 and np.all((anim.values >= 0) & (anim.values <= 1))
    assert anim.steps == 8 and anim.seed == 0
    assert set(anim.timings) >= {"load", "encode", "sample", "total"}
    assert all(v >= 0 for v in anim.timings.values())
    assert anim.audio is not None and len(anim.audio) == len(wav)


def test_accepts_a_file(pipe, speech_wav):
    [a] = pipe(speech_wav)
    [b] = pipe(speechlike(1.5), sr=SR)
    assert a.num_frames == 45
    np.testing.assert_allclose(a.values, b.values, atol=0.02)  # the 16-bit file is the same speech


def test_identity_auto_reports_k_scores(pipe):
    [anim] = pipe(speechlike(1.0), sr=SR, identity="auto")
    assert list(anim.identity_scores) == IDENTITIES
    assert abs(sum(anim.identity_scores.values()) - 1.0) < 1e-5
    best = max(anim.identity_scores, key=anim.identity_scores.get)
    assert anim.identity == f"auto:{best}"


def test_identity_by_name_and_mix(styled):
    wav = speechlike(1.0, seed=2)
    by_name = {n: styled(wav, sr=SR, identity=n)[0] for n in IDENTITIES}
    assert [a.identity for a in by_name.values()] == IDENTITIES
    assert np.abs(by_name["ava"].values - by_name["ben"].values).max() > 1e-3  # identities change the motion
    [mix] = styled(wav, sr=SR, identity={"ava": 0.5, "ben": 0.5})
    assert mix.identity.startswith("mix:") and "ava" in mix.identity and "ben" in mix.identity
    assert not np.array_equal(mix.values, by_name["ava"].values)
    [pure] = styled(wav, sr=SR, identity={"cy": 1.0})
    np.testing.assert_allclose(pure.values, by_name["cy"].values, atol=1e-6)  # a one-name mix is that name
    [auto] = styled(wav, sr=SR)
    best = auto.identity.removeprefix("auto:")
    np.testing.assert_array_equal(auto.values, by_name[best].values)
    [none] = styled(wav, sr=SR, identity=None)
    assert none.identity == "none"


@pytest.mark.parametrize(("identity", "pattern"), [
    ("dan", r"unknown identity 'dan'; choose 'auto' or one of \['ava', 'ben', 'cy'\]"),
    ({"ava": 0.5, "zed": 0.5}, r"unknown identity \['zed'\]; this model knows \['ava', 'ben', 'cy'\]"),
    (3, "identity must be 'auto', a name"),
])
def test_unknown_identity(pipe, identity, pattern):
    with pytest.raises(IdentityError, match=pattern):
        pipe(speechlike(0.5), sr=SR, identity=identity)


def test_unknown_steps_lists_the_available_ones(pipe, ladder):
    with pytest.raises(DiffusionTalkerError, match=r"not trained for 4 steps; choose one of \[8\]"):
        pipe(speechlike(0.5), sr=SR, steps=4)
    with pytest.raises(DiffusionTalkerError, match=r"not trained for 3 steps; choose one of \[1, 2, 4, 8\]"):
        ladder(speechlike(0.5), sr=SR, steps=3)


def test_ladder_rungs(ladder):
    assert ladder.available_steps == [1, 2, 4, 8] and ladder.default_steps == 8
    wav = speechlike(1.0)
    outs = {s: ladder(wav, sr=SR, steps=s)[0] for s in (8, 4, 1)}
    assert outs[8].model == "teacher" and outs[4].model == "student-4" and outs[1].model == "student-1"
    assert outs[1].steps == 1
    assert not np.array_equal(outs[8].values, outs[1].values)  # different rungs, different networks


def test_num_samples_are_one_batch_with_consecutive_seeds(pipe):
    wav = speechlike(1.0, seed=5)
    anims = pipe(wav, sr=SR, num_samples=4, seed=7)
    assert len(anims) == 4 and [a.seed for a in anims] == [7, 8, 9, 10]
    assert all(a.values.shape == (30, 52) for a in anims)
    for a, b in zip(anims, anims[1:]):
        assert np.abs(a.values - b.values).max() > 1e-3  # diverse samples
    assert len({a.identity for a in anims}) == 1  # identity matched once for the clip


@pytest.mark.parametrize("n", [0, 65])
def test_num_samples_range(pipe, n):
    with pytest.raises(DiffusionTalkerError, match="num_samples must be between 1 and 64"):
        pipe(speechlike(0.5), sr=SR, num_samples=n)


def test_audio_is_encoded_once_per_call(tmp_path):
    pipe = Pipeline.from_pretrained(make_checkpoint(tmp_path / "c"))
    encoder = pipe.model().encoder
    calls = []
    original = encoder.forward
    encoder.forward = lambda *a, **k: (calls.append(1), original(*a, **k))[1]
    pipe(speechlike(1.0), sr=SR, steps=8, num_samples=3)
    assert len(calls) == 1


def test_progress_reaches_one(pipe):
    seen = []
    pipe(speechlike(1.0), sr=SR, progress=lambda f, d: seen.append((f, d)))
    fractions = [f for f, _ in seen]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    assert any("denoising" in d for _, d in seen)


def test_bad_audio_raises_audio_error(pipe, tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        pipe(empty)
    with pytest.raises(AudioError, match="give at least 0.2 s"):
        pipe(speechlike(0.1), sr=SR)
    with pytest.raises(AudioError, match="over the 1 s limit"):
        pipe(speechlike(1.5), sr=SR, max_seconds=1.0)


def test_missing_checkpoint():
    with pytest.raises(DiffusionTalkerError, match="checkpoint directory not found"):
        Pipeline.from_pretrained("/no/such/checkpoint")


def test_vertex_checkpoint(tmp_path):
    ckpt = make_checkpoint(tmp_path / "vertex", kind="vertex", vertices=10)
    pipe = Pipeline.from_pretrained(ckpt)
    assert pipe.kind == "vertex"
    wav = speechlike(1.0)
    anims = pipe(wav, sr=SR, num_samples=2)
    model = pipe.model()
    template = model.template.numpy()
    for a in anims:
        assert a.kind == "vertex" and a.names is None
        assert a.values.shape == (num_frames(len(wav)), 10, 3)
        np.testing.assert_array_equal(a.template, template)
        offsets = a.values - template[None]
        assert np.abs(offsets).max() > 1e-4 and np.abs(offsets).mean() < 1.0  # moves around the template
    assert not np.array_equal(anims[0].values, anims[1].values)


def test_file_at_another_rate_is_resampled(pipe, tmp_path):
    """A wav written with save_wav at another rate is resampled on load."""
    path = save_wav(tmp_path / "48k.wav", np.interp(np.arange(48_000) / 3, np.arange(16_000), speechlike(1.0)),
                    sr=48_000)
    [anim] = pipe(path)
    assert anim.num_frames == 30


# --- long audio -------------------------------------------------------------------------------------------------

def seam_frames(pipe: Pipeline, T: int) -> list[int]:
    """Indices j of the jumps v[j+1] - v[j] where one window hands over to the next (both ends of each overlap)."""
    W, O = pipe.window_frames, pipe.overlap_frames
    starts = list(range(0, T - O, W - O))
    seams = set()
    for k in range(1, len(starts)):
        s, prev_end = starts[k], min(starts[k - 1] + W, T)
        if min(s + W, T) - s < W:
            s = T - W
        seams |= {s - 1, prev_end - 1}
        if s + W >= T:
            break
    return sorted(seams)


@pytest.mark.parametrize("audio_only", [False, True], ids=["noise-driven", "audio-driven"])
def test_long_audio_is_continuous_at_window_seams(tmp_path, audio_only):
    ckpt = restyle(make_checkpoint(tmp_path / "long", steps=1), std=0.01, audio_only=audio_only)
    pipe = Pipeline.from_pretrained(ckpt)
    wav = speechlike(70.0, seed=4)
    [anim] = pipe(wav, sr=SR, steps=1)
    T = num_frames(len(wav))
    assert anim.values.shape == (T, 52) and np.isfinite(anim.values).all()
    seams = seam_frames(pipe, T)
    assert len(seams) >= 4  # 70 s spans several 20 s windows
    jumps = np.linalg.norm(np.diff(anim.values.astype(np.float64), axis=0), axis=1)  # (T - 1,)
    inside = np.delete(jumps, seams)
    p99 = np.percentile(inside, 99)
    assert jumps[seams].max() <= p99, f"seam jumps {jumps[seams].round(4)} vs 99th percentile inside {p99:.4f}"
    # and it is deterministic across the windows too
    np.testing.assert_array_equal(pipe(wav, sr=SR, steps=1)[0].values, anim.values)


def test_a_rung_with_other_emotions_is_refused(tmp_path):
    """Every rung of a ladder must know the same emotions as its default rung (the 8-step student here)."""
    from conftest import make_checkpoint

    from diffusiontalker.checkpoint import write_ladder

    make_checkpoint(tmp_path / "teacher", steps=16)  # no emotion head
    make_checkpoint(tmp_path / "student-8", steps=8, emotions=["neutral", "happy"])
    write_ladder(tmp_path, {16: "teacher", 8: "student-8"}, teacher_steps=16)
    pipe = Pipeline.from_pretrained(tmp_path)
    assert pipe.emotion_names == ["neutral", "happy"]
    with pytest.raises(DiffusionTalkerError, match="other identities, emotions or output kind"):
        pipe.model(16)
