"""The x0 denoiser: shapes, zero-initialised output, padding masks, band-limited attention, conditioning."""

from __future__ import annotations

import pytest
import torch

from diffusiontalker.config import override, preset
from diffusiontalker.denoiser import Denoiser, band_structure, pooled_stats, timestep_embedding


def make(seed: int = 0, randomise: bool = True, **overrides) -> Denoiser:
    torch.manual_seed(seed)
    den = Denoiser(override(preset("tiny"), **overrides).model)
    if randomise:  # give the zero-initialised layers weights, so every input matters
        with torch.no_grad():
            for name, p in den.named_parameters():
                if "modulation" in name or "output" in name:
                    p.normal_(0, 0.1)
    return den.eval()


def inputs(B: int = 2, T: int = 40, D: int = 52, C: int = 16, E: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, D, generator=g), torch.randint(0, 1024, (B,), generator=g),
            torch.randn(B, T, C, generator=g), torch.randn(B, E, generator=g), torch.ones(B, T, dtype=torch.bool))


def test_timestep_embedding():
    emb = timestep_embedding(torch.tensor([0, 5, 1023]), 32)
    assert emb.shape == (3, 32)
    torch.testing.assert_close(emb[0], torch.cat([torch.ones(16), torch.zeros(16)]))
    assert not torch.allclose(emb[1], emb[2])


def test_zero_initialised_output():
    den = make(randomise=False)
    out = den(*inputs())
    assert out.shape == (2, 40, 52)
    assert torch.all(out == 0)


def test_shapes_and_vertex_dims():
    den = make(model__kind="vertex", model__motion_dim=30, model__channel_names=None)
    x, t, a, e, m = inputs(D=30, T=17)
    assert den(x, t, a, e, m).shape == (2, 17, 30)


@torch.no_grad()
def test_padding_does_not_leak():
    """A clip's valid frames give the same x0 whether or not it carries (garbage) padding after it."""
    den = make()
    x, t, a, e, m = inputs(B=1, T=40)
    short = den(x[:, :25], t, a[:, :25], e, m[:, :25])
    x_pad, a_pad = x.clone(), a.clone()
    x_pad[:, 25:] = 1e3 * torch.randn(1, 15, 52)
    a_pad[:, 25:] = -7.0
    m[:, 25:] = False
    padded = den(x_pad, t, a_pad, e, m)
    torch.testing.assert_close(padded[:, :25], short, atol=1e-5, rtol=1e-5)
    assert torch.all(padded[:, 25:] == 0)


@torch.no_grad()
def test_band_limited_attention():
    """With one layer and window w, frame i only sees frames i - w .. i + w."""
    den = make()
    w = den.window
    x, t, a, e, m = inputs(B=1, T=60)
    base = den(x, t, a, e, m)
    x2 = x.clone()
    x2[:, 0] += 5.0
    changed = (den(x2, t, a, e, m) - base).abs().amax(-1)[0] > 1e-6  # (T,)
    assert changed[: w + 1].all()
    assert not changed[w + 1:].any()


def test_band_structure():
    mask = torch.tensor([[True, True, True, False]])
    rel, allowed = band_structure(mask, window=1)
    assert rel[0].tolist() == [0, 1, 2, 3]
    assert allowed.shape == (1, 1, 4, 4)
    a = allowed[0, 0]
    assert a[0].tolist() == [True, True, False, False]
    assert a[2].tolist() == [False, True, True, False]  # the padded key 3 is hidden
    assert a[3].tolist() == [False, False, True, True]  # a padded query sees valid keys and itself: no empty row


@torch.no_grad()
def test_per_sample_timesteps():
    den = make()
    x, _, a, e, m = inputs(B=3)
    t = torch.tensor([0, 500, 1023])
    batched = den(x, t, a, e, m)
    for i in range(3):
        torch.testing.assert_close(batched[i: i + 1], den(x[i: i + 1], t[i: i + 1], a[i: i + 1], e[i: i + 1],
                                                          m[i: i + 1]), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batched[0], den(x[:1], torch.tensor([1023]), a[:1], e[:1], m[:1])[0])


@pytest.mark.parametrize("which", ["audio", "identity", "timestep"])
@torch.no_grad()
def test_every_condition_matters(which):
    den = make()
    x, t, a, e, m = inputs(B=1)
    base = den(x, t, a, e, m)
    if which == "audio":
        a = a + 1.0
    elif which == "identity":
        e = -e
    else:
        t = (t + 300) % 1024
    assert (den(x, t, a, e, m) - base).abs().max() > 1e-3


def test_runs_on_longer_sequences_than_the_window():
    den = make()
    x, t, a, e, m = inputs(B=1, T=400)
    out = den(x, t, a, e, m)
    assert out.shape == (1, 400, 52) and torch.isfinite(out).all()


def test_gradients_reach_all_layers():
    den = make()
    den.train()
    den(*inputs()).square().mean().backward()
    missing = [n for n, p in den.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


@torch.no_grad()
def test_global_context_sees_the_whole_utterance_and_ignores_padding():
    """With ``global_context`` a change far outside the attention band still moves frame 0 (through the pooled
    mean/std of the audio), while padding after the clip moves nothing; without it, frame 0 cannot see that far."""
    x, t, a, e, m = inputs(B=1, T=80)
    far = a.clone()
    far[:, 60:] += 2.0  # beyond the tiny preset's band (15) from frame 0, with one layer
    plain, ctx = make(), make(model__global_context=True)
    assert ctx.context_proj is not None and plain.context_proj is None
    assert torch.allclose(plain(x, t, far, e, m)[:, 0], plain(x, t, a, e, m)[:, 0])
    assert (ctx(x, t, far, e, m)[:, 0] - ctx(x, t, a, e, m)[:, 0]).abs().max() > 1e-3

    short = ctx(x[:, :50], t, a[:, :50], e, m[:, :50])
    m_pad, a_pad = m.clone(), a.clone()
    m_pad[:, 50:] = False
    a_pad[:, 50:] = 1e3  # garbage in the padding only
    padded = ctx(x, t, a_pad, e, m_pad)
    torch.testing.assert_close(padded[:, :50], short, atol=1e-5, rtol=1e-5)


def test_pooled_stats_match_numpy():
    feats = torch.randn(2, 9, 4)
    mask = torch.tensor([[True] * 9, [True] * 5 + [False] * 4])
    stats = pooled_stats(feats, mask)
    assert stats.shape == (2, 8)
    torch.testing.assert_close(stats[1, :4], feats[1, :5].mean(0))
    torch.testing.assert_close(stats[1, 4:], feats[1, :5].std(0, unbiased=False), atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_emotion_head_reads_the_audio_and_a_named_emotion_overrides_it():
    den = make(model__emotion_head=True, model__emotion_names=["neutral", "happy", "sad"])
    x, t, a, e, m = inputs()
    neutral, happy = torch.tensor([[1.0, 0, 0]] * 2), torch.tensor([[0, 1.0, 0]] * 2)
    # the projection starts at zero: adding the head to a trained model changes nothing until it is trained
    torch.testing.assert_close(den(x, t, a, e, m, emotion=neutral), den(x, t, a, e, m, emotion=happy))
    torch.nn.init.normal_(den.emotion_proj.weight, std=0.5)
    assert (den(x, t, a, e, m, emotion=neutral) - den(x, t, a, e, m, emotion=happy)).abs().max() > 1e-3
    logits = den.emotion_logits(a, m, e)
    assert logits.shape == (2, 3)
    # the head hears the audio against the speaker: another identity, another reading
    assert not torch.allclose(logits, den.emotion_logits(a, m, torch.roll(e, 1, dims=0)))
    # no emotion given: the head's reading of the audio (its softmax) conditions the model
    torch.testing.assert_close(den(x, t, a, e, m), den(x, t, a, e, m, emotion=torch.softmax(logits, -1)))
    assert make().emotion_head is None
    with pytest.raises(ValueError, match="no emotion head"):
        make().emotion_logits(a, m, e)
