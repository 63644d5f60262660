"""The identity library: embeddings, mixes, errors, InfoNCE, and matching speakers from audio after brief training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import speechlike

from diffusiontalker.config import override, preset
from diffusiontalker.diffusion import training_loss
from diffusiontalker.errors import IdentityError
from diffusiontalker.identity import AttentionPool, IdentityLibrary
from diffusiontalker.model import TalkerModel
from diffusiontalker.schedule import NoiseSchedule

NAMES = ["ava", "ben", "cy"]


@pytest.fixture
def lib() -> IdentityLibrary:
    torch.manual_seed(0)
    return IdentityLibrary(NAMES, audio_dim=16, dim=8)


def test_temperature_starts_at_0_07(lib):
    assert math.isclose(float(lib.temperature.detach()), 0.07, rel_tol=1e-6)
    assert lib.log_temperature.requires_grad


def test_match_is_a_distribution_over_k(lib):
    feats, mask = torch.randn(4, 20, 16), torch.ones(4, 20, dtype=torch.bool)
    mask[1, 10:] = False
    p = lib.match(feats, mask)
    assert p.shape == (4, 3)
    torch.testing.assert_close(p.sum(-1), torch.ones(4))
    assert torch.all(p >= 0)


def test_attention_pool_ignores_padding():
    torch.manual_seed(0)
    pool = AttentionPool(5)
    x = torch.randn(1, 10, 5)
    mask = torch.tensor([[True] * 6 + [False] * 4])
    garbage = x.clone()
    garbage[:, 6:] = 1e4
    torch.testing.assert_close(pool(x, mask), pool(garbage, mask))
    torch.testing.assert_close(pool(x, mask), pool(x[:, :6], mask[:, :6]))


def test_audio_embedding_is_unit(lib):
    v = lib.audio_embedding(torch.randn(3, 7, 16), torch.ones(3, 7, dtype=torch.bool))
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(3))


def test_embed_names_and_null(lib):
    table = lib.embed(torch.tensor([0, 2, -1]))
    assert table.shape == (3, 8)
    torch.testing.assert_close(table[:2].norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(table[2], lib.null)


def test_mix(lib):
    unit = lib.unit_embeddings()
    torch.testing.assert_close(lib.mix({"ben": 2.0}), unit[1])
    half = lib.mix({"ava": 0.5, "cy": 0.5})
    torch.testing.assert_close(half, torch.nn.functional.normalize(unit[0] + unit[2], dim=0))
    torch.testing.assert_close(lib.mix({"ava": 1, "cy": 1}), half)  # weights are normalised


@pytest.mark.parametrize(("weights", "pattern"), [
    ({}, "needs at least one name"),
    ({"zed": 1.0}, r"unknown identity \['zed'\]; this model knows \['ava', 'ben', 'cy'\]"),
    ({"ava": -1.0, "ben": 2.0}, "must be >= 0 and not all zero"),
    ({"ava": 0.0}, "must be >= 0 and not all zero"),
])
def test_mix_errors(lib, weights, pattern):
    with pytest.raises(IdentityError, match=pattern):
        lib.mix(weights)


def test_index(lib):
    assert lib.index("cy") == 2
    with pytest.raises(IdentityError, match=r"unknown identity 'dan'; choose 'auto' or one of \['ava', 'ben', 'cy'\]"):
        lib.index("dan")


def test_contrastive_loss(lib):
    feats, mask = torch.randn(6, 9, 16), torch.ones(6, 9, dtype=torch.bool)
    speaker = torch.tensor([0, 1, 2, 0, 1, 2])
    loss, acc = lib.contrastive_loss(feats, mask, speaker)
    logits = lib.logits(feats, mask)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, speaker))
    assert 0.0 <= float(acc) <= 1.0
    loss.backward()
    assert lib.embeddings.grad is not None and lib.log_temperature.grad is not None


# --- learning: identity visible in the audio (each speaker a different pitch) -----------------------------------

@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread (no thread sync per op), especially on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


PITCH = {"low": 95.0, "mid": 165.0, "high": 280.0}


def test_match_ranks_the_right_identity_after_brief_training(one_thread):
    names = list(PITCH)
    torch.manual_seed(0)
    cfg = override(preset("tiny"), model__identity_names=names, diffusion__identity_weight=1.0)
    model = TalkerModel(cfg.model)
    schedule = NoiseSchedule(cfg.diffusion.num_train_timesteps)
    rng = np.random.default_rng(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    B, seconds, frames = 6, 0.6, 18
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        speaker = torch.arange(B) % len(names)
        audio = torch.stack([
            torch.from_numpy(speechlike(seconds, f0=PITCH[names[k]] * rng.uniform(0.93, 1.07),
                                        seed=int(rng.integers(1_000_000))))
            for k in speaker.tolist()]) * torch.from_numpy(rng.uniform(0.3, 1.0, (B, 1))).float()
        batch = {"audio": audio, "audio_lengths": torch.full((B,), audio.shape[1]),
                 "motion": torch.rand(B, frames, 52, generator=gen), "mask": torch.ones(B, frames, dtype=torch.bool),
                 "speaker": speaker, "num_frames": torch.full((B,), frames)}
        out = training_loss(model, schedule, batch, cfg.diffusion, generator=gen)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()

    model.eval()
    with torch.no_grad():
        for k, name in enumerate(names):
            for j, jitter in enumerate((0.96, 1.0, 1.04)):  # held out: new seeds, new pitch jitter, longer clips
                wav = torch.from_numpy(speechlike(1.1, f0=PITCH[name] * jitter, seed=10_000 + j))[None]
                feats, mask = model.encode(wav)
                probs = model.identity.match(feats, mask)[0]
                assert int(probs.argmax()) == k, (name, jitter, probs.tolist())
