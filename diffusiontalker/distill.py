"""Progressive distillation (Salimans & Ho 2022, Algorithm 2) in the x0 parameterisation.

A student sampling with N steps is trained so that ONE of its DDIM steps t -> t'' (t'' = t - T/N) lands where TWO
DDIM steps of its teacher (2N steps) land: t -> t' -> t'' with t' = t - T/(2N). Because the grids are nested, every
student step spans exactly two teacher steps. The x-space target that makes the student's single step exact is
(Salimans & Ho, Algorithm 2)

    x~ = (z_t'' - (sigma_t'' / sigma_t) z_t) / (alpha_t'' - (sigma_t'' / sigma_t) alpha_t)

and the loss is weighted by max(SNR_t, 1) ("truncated SNR" weighting, their sec. 4). At t'' = -1 (the last step),
sigma_t'' = 0 and the target is simply the teacher's two-step result. The contrastive identity loss stays on, so
personalisation survives distillation. So does the emotion head (models with one): its cross-entropy stays on, and
the teacher conditions on the same emotion choice as the student (the true label's one-hot, or its own reading of
the audio where the student uses its own).
"""

from __future__ import annotations

import torch

from diffusiontalker.config import DiffusionConfig
from diffusiontalker.diffusion import _bcast, conditioning, ddim_step, masked_mse, q_sample, velocity_loss
from diffusiontalker.model import TalkerModel
from diffusiontalker.schedule import NoiseSchedule


def distillation_target(schedule: NoiseSchedule, z_t: torch.Tensor, z_tpp: torch.Tensor, t: torch.Tensor,
                        t_pp: torch.Tensor) -> torch.Tensor:
    """The x-target for which one DDIM step z_t -> z_t'' is exact (Salimans & Ho 2022, Algorithm 2)."""
    a_t, s_t = _bcast(schedule.alpha(t), z_t), _bcast(schedule.sigma(t), z_t)
    a_pp, s_pp = _bcast(schedule.alpha(t_pp), z_t), _bcast(schedule.sigma(t_pp), z_t)
    ratio = s_pp / s_t
    return (z_tpp - ratio * z_t) / (a_pp - ratio * a_t)


def teacher_two_steps(teacher: TalkerModel, schedule: NoiseSchedule, z_t: torch.Tensor, t: torch.Tensor,
                      student_steps: int, feats: torch.Tensor, identity: torch.Tensor, mask: torch.Tensor,
                      emotion: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two teacher DDIM steps t -> t' -> t'' on the teacher's 2N grid; returns (z_t'', t'')."""
    half = schedule.num_train_timesteps // (2 * student_steps)
    t_p, t_pp = t - half, t - 2 * half
    extra = {} if emotion is None else {"emotion": emotion}  # only when given: test doubles take no emotion
    z_p = ddim_step(schedule, z_t, teacher.denoiser(z_t, t, feats, identity, mask, **extra), t, t_p)
    z_pp = ddim_step(schedule, z_p, teacher.denoiser(z_p, t_p, feats, identity, mask, **extra), t_p, t_pp)
    return z_pp, t_pp


def progressive_distill_loss(student: TalkerModel, teacher: TalkerModel, schedule: NoiseSchedule, batch: dict,
                             student_steps: int, cfg: DiffusionConfig, generator: torch.Generator | None = None
                             ) -> dict[str, torch.Tensor]:
    """One distillation loss evaluation for a student of ``student_steps`` steps against its 2N-step teacher."""
    cond = conditioning(student, batch, cfg, generator)
    mask = cond["mask"] & batch["mask"]
    x0 = student.normalise(batch["motion"]) * mask[..., None]
    B = x0.shape[0]
    stride = schedule.num_train_timesteps // student_steps
    i = torch.randint(0, student_steps, (B,), generator=generator).to(x0.device)
    t = (i + 1) * stride - 1  # a point of the student's grid, per sample
    z_t = q_sample(schedule, x0, t, torch.randn(x0.shape, generator=generator).to(x0.device))
    with torch.no_grad():
        t_feats, _ = teacher.encode(batch["audio"], batch["audio_lengths"], batch["num_frames"])
        # the teacher conditions on the same identity choice (index or null) as the student
        t_identity = teacher.identity.embed(cond["index"])
        t_emotion = None
        if cond["emotion"] is not None and teacher.denoiser.emotion_head is not None:
            same = teacher.denoiser.emotion_features == student.denoiser.emotion_features
            t_prosody = cond["prosody"] if same else teacher.prosody(batch["audio"], batch["audio_lengths"])
            t_emotion = torch.softmax(teacher.denoiser.emotion_logits(t_feats, mask, t_identity, t_prosody), dim=-1)
            t_emotion = torch.where(cond["emotion_forced"][:, None], cond["emotion"], t_emotion)
        z_pp, t_pp = teacher_two_steps(teacher, schedule, z_t, t, student_steps, t_feats, t_identity, mask,
                                       t_emotion)
        target = distillation_target(schedule, z_t, z_pp, t, t_pp) * mask[..., None]
    pred = student.denoiser(z_t, t, cond["feats"], cond["identity"], mask, emotion=cond["emotion"])
    weight = schedule.snr(t).clamp(min=1.0).to(pred.dtype)  # max(SNR_t, 1)
    weight = weight / weight.mean()  # keep the loss scale comparable across rounds
    rec = (masked_mse(pred, target, mask, per_sample=True) * weight).mean()
    vel = (velocity_loss(pred, target, mask, per_sample=True) * weight).mean()
    loss = rec + cfg.velocity_weight * vel + cfg.identity_weight * cond["id_loss"]
    out = {"rec": rec.detach(), "vel": vel.detach(), "id": cond["id_loss"].detach(), "id_acc": cond["id_acc"].detach()}
    if "emo_loss" in cond:
        loss = loss + cfg.emotion_weight * cond["emo_loss"]
        out.update(emo=cond["emo_loss"].detach(), emo_acc=cond["emo_acc"].detach())
    return {"loss": loss, **out}

