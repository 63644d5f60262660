"""Cosine schedule, nested grids, DDIM/DDPM steps against diffusers, seeding, and a tiny model overfitting one clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import speechlike

from diffusiontalker.config import override, preset
from diffusiontalker.diffusion import ddim_step, ddpm_step, masked_mse, q_sample, sample, training_loss, velocity_loss
from diffusiontalker.errors import ConfigError
from diffusiontalker.model import TalkerModel
from diffusiontalker.pipeline import Pipeline
from diffusiontalker.schedule import NoiseSchedule

T_TRAIN = 1024


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    return NoiseSchedule(T_TRAIN)


def ddim_oracle():
    diffusers = pytest.importorskip("diffusers")
    return diffusers.DDIMScheduler(num_train_timesteps=T_TRAIN, beta_schedule="squaredcos_cap_v2",
                                   prediction_type="sample", timestep_spacing="trailing", clip_sample=False,
                                   set_alpha_to_one=True)


def random_model(seed: int = 0, **overrides) -> TalkerModel:
    """A tiny model whose zero-initialised layers get random weights, so outputs depend on every input."""
    torch.manual_seed(seed)
    model = TalkerModel(override(preset("tiny"), **overrides).model)
    with torch.no_grad():
        for name, p in model.denoiser.named_parameters():
            if "modulation" in name or "output" in name:
                p.normal_(0, 0.05)
    return model.eval()


# --- schedule ---------------------------------------------------------------------------------------------------

def test_cosine_schedule_shape(schedule):
    t = torch.arange(-1, T_TRAIN)
    ab = schedule.alpha_bar(t)
    assert ab.dtype == torch.float64
    assert ab[0] == 1.0  # index -1: clean
    assert torch.all(ab[1:] < ab[:-1])  # strictly decreasing
    assert 0 < ab[-1] < 1e-6  # nearly pure noise at the end, never exactly 0
    torch.testing.assert_close(schedule.alpha(t) ** 2 + schedule.sigma(t) ** 2, torch.ones_like(ab))
    assert schedule.sigma(-1) == 0 and schedule.alpha(-1) == 1
    snr = schedule.snr(t[1:])
    assert torch.all(snr[1:] < snr[:-1])
    # Nichol & Dhariwal eq. 17 in the middle of the chain (betas not clipped there)
    u = torch.tensor(511 + 1.0) / T_TRAIN
    f = lambda v: torch.cos((v + 0.008) / 1.008 * torch.pi / 2) ** 2  # noqa: E731
    assert abs(float(schedule.alpha_bar(511)) - float(f(u) / f(torch.tensor(0.0)))) < 1e-6


def test_out_of_range_timesteps(schedule):
    with pytest.raises(ValueError, match=r"\[-1, 1023\]"):
        schedule.alpha_bar(1024)
    with pytest.raises(ValueError):
        schedule.alpha_bar(torch.tensor([-2]))


def test_alphas_cumprod_match_diffusers(schedule):
    oracle = ddim_oracle()
    ours = schedule.alpha_bar(torch.arange(T_TRAIN))
    torch.testing.assert_close(ours.float(), oracle.alphas_cumprod, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("steps", [1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
def test_grids_are_nested(schedule, steps):
    grid = schedule.grid(steps)
    assert grid == sorted(grid, reverse=True) and len(grid) == steps
    assert sorted(grid) == [(i + 1) * T_TRAIN // steps - 1 for i in range(steps)]
    assert grid[0] == T_TRAIN - 1
    assert set(grid) <= set(schedule.grid(2 * steps))  # every N grid is a subset of the 2N grid
    assert int(schedule.next_t(torch.tensor(grid[-1]), steps)) == -1  # the walk ends at the clean index
    for a, b in zip(grid, grid[1:]):
        assert int(schedule.next_t(torch.tensor(a), steps)) == b


@pytest.mark.parametrize("steps", [8, 64])
def test_grid_matches_diffusers_trailing_spacing(schedule, steps):
    oracle = ddim_oracle()
    oracle.set_timesteps(steps)
    assert oracle.timesteps.tolist() == schedule.grid(steps)


@pytest.mark.parametrize("steps", [0, 3, 2048])
def test_bad_grid_lists_examples(schedule, steps):
    with pytest.raises(ConfigError, match=rf"steps={steps} must be a power of two dividing 1024"):
        schedule.grid(steps)


# --- steps ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [1, 4, 8, 32])
def test_ddim_step_matches_diffusers(schedule, steps):
    oracle = ddim_oracle()
    oracle.set_timesteps(steps)
    g = torch.Generator().manual_seed(steps)
    for t in schedule.grid(steps):
        z = torch.randn(2, 9, 5, generator=g)
        x0 = 0.5 * torch.randn(2, 9, 5, generator=g)
        expected = oracle.step(model_output=x0, timestep=t, sample=z).prev_sample
        ours = ddim_step(schedule, z, x0, torch.full((2,), t), schedule.next_t(torch.full((2,), t), steps))
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_ddpm_step_matches_diffusers_eta_one(schedule):
    """Ancestral DDPM over a stride is DDIM with eta = 1 (Song et al. 2021, eq. 16)."""
    oracle = ddim_oracle()
    steps = 16
    oracle.set_timesteps(steps)
    g = torch.Generator().manual_seed(1)
    for t in schedule.grid(steps)[:-1]:
        z, x0, noise = (torch.randn(3, 7, 4, generator=g) for _ in range(3))
        expected = oracle.step(model_output=x0, timestep=t, sample=z, eta=1.0, variance_noise=noise).prev_sample
        tt = torch.full((3,), t)
        ours = ddpm_step(schedule, z, x0, tt, schedule.next_t(tt, steps), noise)
        torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_last_ddim_step_returns_x0(schedule):
    z, x0 = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    out = ddim_step(schedule, z, x0, torch.tensor([127, 255]), torch.tensor([-1, -1]))
    torch.testing.assert_close(out, x0)


def test_per_sample_timesteps_equal_separate_calls(schedule):
    g = torch.Generator().manual_seed(0)
    z, x0, noise = (torch.randn(4, 6, 3, generator=g) for _ in range(3))
    t = torch.tensor([1023, 511, 63, 0])
    t_next = torch.tensor([767, 255, -1, -1])
    batched = ddim_step(schedule, z, x0, t, t_next)
    ancestral = ddpm_step(schedule, z, x0, t, t_next, noise)
    noised = q_sample(schedule, x0, t, noise)
    for i in range(4):
        one = slice(i, i + 1)
        torch.testing.assert_close(batched[one], ddim_step(schedule, z[one], x0[one], t[one], t_next[one]))
        torch.testing.assert_close(ancestral[one], ddpm_step(schedule, z[one], x0[one], t[one], t_next[one],
                                                             noise[one]))
        torch.testing.assert_close(noised[one], q_sample(schedule, x0[one], t[one], noise[one]))


@pytest.mark.parametrize("t", [0, 300, 700, 1023])
def test_q_sample_statistics(schedule, t):
    x0 = torch.full((20_000, 1, 1), 0.7)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(t))
    z = q_sample(schedule, x0, torch.full((20_000,), t), noise)
    alpha, sigma = float(schedule.alpha(t)), float(schedule.sigma(t))
    assert abs(float(z.mean()) - alpha * 0.7) < 4 * sigma / np.sqrt(20_000) + 1e-6
    assert abs(float(z.std()) - sigma) < 0.03 * sigma + 1e-6


def test_masked_losses_ignore_padding():
    a, b = torch.zeros(2, 4, 3), torch.ones(2, 4, 3)
    b[:, 2:] = 100.0  # huge error only on padded frames
    mask = torch.tensor([[True, True, False, False]] * 2)
    assert float(masked_mse(a, b, mask)) == 1.0
    assert float(velocity_loss(a, b, mask)) == 0.0
    assert masked_mse(a, b, mask, per_sample=True).shape == (2,)


# --- sampling and seeds -----------------------------------------------------------------------------------------

def _sample_inputs(model: TalkerModel, B: int = 2, T: int = 20, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, T, model.cfg.audio_dim, generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    identity = model.identity.embed(torch.zeros(B, dtype=torch.long))
    noise = torch.randn(B, T, model.cfg.motion_dim, generator=g)
    return feats, mask, identity, noise


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_sampler_runs_and_is_seeded(schedule, sampler):
    model = random_model()
    feats, mask, identity, noise = _sample_inputs(model)
    calls = []

    def run(seed):
        return sample(model, schedule, feats, mask, identity, 8, noise, sampler=sampler,
                      generator=torch.Generator().manual_seed(seed), progress=lambda i, n: calls.append((i, n)))

    a, b, c = run(0), run(0), run(1)
    assert a.shape == noise.shape and torch.isfinite(a).all()
    assert torch.equal(a, b)
    if sampler == "ddpm":
        assert not torch.allclose(a, c)  # the ancestral noise follows the generator
    else:
        assert torch.equal(a, c)  # DDIM is deterministic given the starting noise
    assert calls[:8] == [(i, 8) for i in range(1, 9)]


def test_ddim_sample_equals_manual_walk(schedule):
    model = random_model()
    feats, mask, identity, noise = _sample_inputs(model)
    z = noise.clone()
    for t in schedule.grid(4):
        tt = torch.full((2,), t)
        with torch.no_grad():
            z = ddim_step(schedule, z, model.denoiser(z, tt, feats, identity, mask), tt, schedule.next_t(tt, 4))
    torch.testing.assert_close(sample(model, schedule, feats, mask, identity, 4, noise), z)


def test_sample_masks_padding(schedule):
    model = random_model()
    feats, mask, identity, noise = _sample_inputs(model)
    mask[1, 12:] = False
    out = sample(model, schedule, feats, mask, identity, 4, noise)
    assert torch.all(out[1, 12:] == 0) and out[1, :12].abs().sum() > 0


def test_inpainting_holds_known_frames_near_known_motion(schedule):
    model = random_model()
    feats, mask, identity, noise = _sample_inputs(model)
    known = torch.full_like(noise, 0.3)
    known_mask = torch.zeros(2, 20, dtype=torch.bool)
    known_mask[:, :5] = True
    free = sample(model, schedule, feats, mask, identity, 8, noise)
    held = sample(model, schedule, feats, mask, identity, 8, noise, known=known, known_mask=known_mask,
                  generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(free, held)  # conditioning on known frames changes the result


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint) -> Pipeline:
    return Pipeline.from_pretrained(tiny_checkpoint)


def test_same_seed_same_sample(pipe):
    wav = speechlike(1.0, seed=3)
    a = pipe(wav, sr=16_000, seed=5, identity="ava")[0].values
    b = pipe(wav, sr=16_000, seed=5, identity="ava")[0].values
    assert np.array_equal(a, b)


def test_different_seeds_differ(pipe):
    wav = speechlike(1.0, seed=3)
    a = pipe(wav, sr=16_000, seed=5)[0].values
    b = pipe(wav, sr=16_000, seed=6)[0].values
    assert np.abs(a - b).max() > 1e-3


def test_sample_i_of_seed_s_is_sample_0_of_seed_s_plus_i(pipe):
    wav = speechlike(1.0, seed=3)
    batch = pipe(wav, sr=16_000, seed=10, num_samples=3, identity="ben")
    assert [a.seed for a in batch] == [10, 11, 12]
    for i, anim in enumerate(batch):
        single = pipe(wav, sr=16_000, seed=10 + i, identity="ben")[0]
        np.testing.assert_allclose(anim.values, single.values, atol=1e-5)


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread (no thread sync per op), especially on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- learning ---------------------------------------------------------------------------------------------------

def test_tiny_model_overfits_one_clip(schedule, one_thread):
    """One fixed (audio, motion) pair: the x0 loss at a fixed set of timesteps falls by >= 10x."""
    torch.manual_seed(0)
    cfg = override(preset("tiny"), model__identity_names=["solo"], diffusion__identity_dropout=0.0,
                   diffusion__identity_weight=0.0)
    model = TalkerModel(cfg.model)
    wav = torch.from_numpy(speechlike(0.5, seed=0))
    frames = 15
    tt = torch.arange(frames) / 30.0
    motion = torch.stack([0.3 + 0.2 * torch.sin(2 * np.pi * (k % 5 + 1) * 0.5 * tt + k) for k in range(52)], 1)
    model.set_normalisation(motion.mean(0), motion.std(0))
    B = 4
    batch = {"audio": wav[None].repeat(B, 1), "audio_lengths": torch.full((B,), len(wav)),
             "motion": motion[None].repeat(B, 1, 1), "mask": torch.ones(B, frames, dtype=torch.bool),
             "speaker": torch.zeros(B, dtype=torch.long), "num_frames": torch.full((B,), frames)}

    def eval_loss() -> float:
        """Reconstruction error at fixed timesteps spread over the chain, fixed noise."""
        model.eval()
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            feats, mask = model.encode(batch["audio"], batch["audio_lengths"], batch["num_frames"])
            x0 = model.normalise(batch["motion"])
            t = torch.linspace(0, T_TRAIN - 1, B).long()
            z = q_sample(schedule, x0, t, torch.randn(x0.shape, generator=g))
            pred = model.denoiser(z, t, feats, model.identity.embed(batch["speaker"]), mask)
        model.train()
        return float(masked_mse(pred, x0, mask))

    before = eval_loss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(200):
        out = training_loss(model, schedule, batch, cfg.diffusion, generator=g)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    after = eval_loss()
    assert np.isfinite(losses).all()
    assert after < before / 10, (before, after)
    assert np.mean(losses[-20:]) < np.mean(losses[:20]) / 5  # the training loss itself (random t) falls too
