"""Progressive distillation math (Salimans & Ho 2022, Algorithm 2) checked exactly, in float64.

With a fixed nonlinear "teacher" x0-predictor, the distillation target x~ fed into ONE student DDIM step t -> t''
must land exactly on the teacher's TWO DDIM steps t -> t' -> t''.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from diffusiontalker.config import override, preset
from diffusiontalker.diffusion import ddim_step, q_sample
from diffusiontalker.distill import distillation_target, progressive_distill_loss, teacher_two_steps
from diffusiontalker.model import TalkerModel
from diffusiontalker.schedule import NoiseSchedule

T_TRAIN = 1024
D = 6


class RandomTeacher:
    """A fixed random nonlinear x0 predictor f(z_t, t, audio, identity, mask), in float64."""

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.randn(D, 16, generator=g, dtype=torch.float64) / D ** 0.5
        self.w2 = torch.randn(16, D, generator=g, dtype=torch.float64) / 4.0
        self.wa = torch.randn(3, D, generator=g, dtype=torch.float64)

    def __call__(self, z, t, audio, identity, mask):
        time = (t.to(torch.float64) / T_TRAIN).view(-1, 1, 1)  # (B, 1, 1)
        h = torch.tanh(z @ self.w1 * (1.0 + time)) @ self.w2  # (B, T, D)
        return (h + 0.3 * torch.sin(audio @ self.wa) + 0.1 * identity[:, None, :1] - 0.5 * time) * mask[..., None]


@pytest.fixture(scope="module")
def schedule() -> NoiseSchedule:
    return NoiseSchedule(T_TRAIN)


def student_grid_points(schedule: NoiseSchedule, student_steps: int) -> torch.Tensor:
    return torch.tensor(schedule.grid(student_steps))  # (N,) descending, the last one steps to t'' = -1


def teacher_two_step_reference(f, schedule, z_t, t, student_steps, feats, identity, mask):
    """Two explicit teacher DDIM steps on the 2N grid, written out independently of distill.py."""
    half = T_TRAIN // (2 * student_steps)
    t_p = t - half
    z_p = ddim_step(schedule, z_t, f(z_t, t, feats, identity, mask), t, t_p)
    return ddim_step(schedule, z_p, f(z_p, t_p, feats, identity, mask), t_p, t_p - half), t_p - half


@pytest.mark.parametrize("student_steps", [1, 2, 4, 8, 64, 256])
def test_student_step_matches_two_teacher_steps(schedule, student_steps):
    f = RandomTeacher()
    t = student_grid_points(schedule, student_steps)  # every point of the student's grid, one per sample
    B, T = len(t), 11
    g = torch.Generator().manual_seed(student_steps)
    x0 = torch.randn(B, T, D, generator=g, dtype=torch.float64)
    z_t = q_sample(schedule, x0, t, torch.randn(B, T, D, generator=g, dtype=torch.float64))
    feats = torch.randn(B, T, 3, generator=g, dtype=torch.float64)
    identity = torch.randn(B, 4, generator=g, dtype=torch.float64)
    mask = torch.ones(B, T, dtype=torch.bool)

    z_pp, t_pp = teacher_two_step_reference(f, schedule, z_t, t, student_steps, feats, identity, mask)
    assert t_pp.tolist() == schedule.next_t(t, student_steps).tolist()
    assert t_pp[-1] == -1  # the last student step ends at the clean end of the chain

    target = distillation_target(schedule, z_t, z_pp, t, t_pp)
    assert target.dtype == torch.float64
    student = ddim_step(schedule, z_t, target, t, t_pp)  # ONE student step with x~ as its x0 prediction
    torch.testing.assert_close(student, z_pp, rtol=0, atol=1e-6)
    # at t'' = -1 the target is the teacher's two-step result itself
    torch.testing.assert_close(target[-1], z_pp[-1], rtol=0, atol=1e-9)

    # distill.teacher_two_steps walks the same two steps
    teacher = SimpleNamespace(denoiser=f)
    z_pp2, t_pp2 = teacher_two_steps(teacher, schedule, z_t, t, student_steps, feats, identity, mask)
    assert torch.equal(t_pp2, t_pp)
    torch.testing.assert_close(z_pp2, z_pp, rtol=0, atol=1e-12)


def test_target_is_not_the_teacher_x0(schedule):
    """The x-target differs from simply copying a teacher prediction (otherwise the test above proves little)."""
    f = RandomTeacher(1)
    t = torch.tensor([767, 511])
    z_t = torch.randn(2, 5, D, dtype=torch.float64)
    feats, identity, mask = torch.zeros(2, 5, 3, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64), \
        torch.ones(2, 5, dtype=torch.bool)
    z_pp, t_pp = teacher_two_step_reference(f, schedule, z_t, t, 4, feats, identity, mask)
    target = distillation_target(schedule, z_t, z_pp, t, t_pp)
    assert (target - f(z_t, t, feats, identity, mask)).abs().max() > 1e-3
    # and one teacher step of 2x the stride with its own x0 misses z_t''
    naive = ddim_step(schedule, z_t, f(z_t, t, feats, identity, mask), t, t_pp)
    assert (naive - z_pp).abs().max() > 1e-3


def test_progressive_distill_loss_runs_and_trains_the_student_only():
    torch.manual_seed(0)
    cfg = override(preset("tiny"), model__identity_names=["a", "b"])
    teacher, student = TalkerModel(cfg.model), TalkerModel(cfg.model)
    with torch.no_grad():
        torch.nn.init.normal_(teacher.denoiser.output.weight, std=0.05)
    student.load_state_dict(teacher.state_dict())
    B, N, T = 3, 8000, 15
    batch = {"audio": torch.randn(B, N) * 0.1, "audio_lengths": torch.tensor([N, N, 6000]),
             "motion": torch.rand(B, T, 52), "mask": torch.ones(B, T, dtype=torch.bool),
             "speaker": torch.tensor([0, 1, 0]), "num_frames": torch.tensor([T, T, 11])}
    out = progressive_distill_loss(student, teacher, NoiseSchedule(T_TRAIN), batch, 4, cfg.diffusion,
                                   generator=torch.Generator().manual_seed(0))
    assert set(out) >= {"loss", "rec", "vel", "id", "id_acc"}
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert student.denoiser.output.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
