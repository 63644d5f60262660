"""Gaussian diffusion in the x0 parameterisation: forward noising, the training loss, DDIM and DDPM sampling.

Notation (Salimans & Ho 2022, sec. 2): z_t = alpha_t x + sigma_t eps; the network predicts x_hat = f(z_t, t, c).
Every function takes PER-SAMPLE timesteps, a (B,) tensor, so a batch may mix steps (training, distillation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from diffusiontalker.config import DiffusionConfig
from diffusiontalker.model import TalkerModel
from diffusiontalker.schedule import NoiseSchedule


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) float64 schedule values -> broadcastable (B, 1, ..., 1) in ``like``'s dtype."""
    return v.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))


def q_sample(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Forward process q(z_t | x): z_t = alpha_t x + sigma_t eps (DDPM eq. 4)."""
    return _bcast(schedule.alpha(t), x0) * x0 + _bcast(schedule.sigma(t), x0) * noise


def ddim_step(schedule: NoiseSchedule, z_t: torch.Tensor, x0_pred: torch.Tensor, t: torch.Tensor,
              t_next: torch.Tensor) -> torch.Tensor:
    """One deterministic DDIM step (Song et al. 2021, eq. 12 with eta = 0) from t to t_next < t, per sample.

    t_next = -1 is the clean end (alpha = 1, sigma = 0), where the step returns x0_pred itself.
    """
    a_t, s_t = _bcast(schedule.alpha(t), z_t), _bcast(schedule.sigma(t), z_t)
    a_n, s_n = _bcast(schedule.alpha(t_next), z_t), _bcast(schedule.sigma(t_next), z_t)
    eps_pred = (z_t - a_t * x0_pred) / s_t  # implied noise: eps = (z_t - alpha_t x) / sigma_t
    return a_n * x0_pred + s_n * eps_pred  # z_{t_next} = alpha_next x + sigma_next eps


def ddpm_step(schedule: NoiseSchedule, z_t: torch.Tensor, x0_pred: torch.Tensor, t: torch.Tensor,
              t_next: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One ancestral step from the posterior q(z_s | z_t, x) (DDPM eq. 6–7), generalised to a stride t -> s."""
    ab_t, ab_s = _bcast(schedule.alpha_bar(t), z_t), _bcast(schedule.alpha_bar(t_next), z_t)
    alpha_ts = ab_t / ab_s  # alpha_bar_t / alpha_bar_s: the stride's own "alpha"
    beta_ts = 1 - alpha_ts
    mean = (ab_s.sqrt() * beta_ts / (1 - ab_t)) * x0_pred + (alpha_ts.sqrt() * (1 - ab_s) / (1 - ab_t)) * z_t
    var = beta_ts * (1 - ab_s) / (1 - ab_t)
    return mean + var.clamp_min(0).sqrt() * noise


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, per_sample: bool = False) -> torch.Tensor:
    """Mean squared error over valid frames (mask (B, T)); per sample -> (B,) else a scalar."""
    err = ((a - b) ** 2).mean(-1) * mask  # (B, T)
    per = err.sum(1) / mask.sum(1).clamp_min(1)
    return per if per_sample else per.mean()


def velocity_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, per_sample: bool = False
                  ) -> torch.Tensor:
    """MSE of frame-to-frame differences (the velocity term, as in FaceFormer/FaceDiffuser)."""
    m = mask[:, 1:] & mask[:, :-1]
    return masked_mse(pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1], m, per_sample)


def conditioning(model: TalkerModel, batch: dict, cfg: DiffusionConfig, generator: torch.Generator | None = None,
                 train: bool = True) -> dict:
    """Encode audio once, compute the identity (contrastive) loss, and pick each sample's identity vector."""
    feats, mask = model.encode(batch["audio"], batch["audio_lengths"], batch["num_frames"])  # (B, T, C), (B, T)
    speaker = batch["speaker"]
    id_loss, id_acc = model.identity.contrastive_loss(feats, mask, speaker)
    index = speaker.clone()
    if train and cfg.identity_dropout > 0:
        drop = (torch.rand(speaker.shape, generator=generator) < cfg.identity_dropout).to(speaker.device)
        index = torch.where(drop, torch.full_like(index, -1), index)
    out = {"feats": feats, "mask": mask, "index": index, "identity": model.identity.embed(index), "id_loss": id_loss,
           "id_acc": id_acc, "emotion": None, "prosody": None}
    if model.denoiser.emotion_head is not None:
        out["prosody"] = model.prosody(batch["audio"], batch["audio_lengths"])  # None unless the head hears it
        out.update(emotion_conditioning(model, feats, mask, out["identity"], batch.get("emotion"), cfg, generator,
                                        train, out["prosody"]))
    return out


def emotion_conditioning(model: TalkerModel, feats: torch.Tensor, mask: torch.Tensor, identity: torch.Tensor,
                         label: torch.Tensor | None, cfg: DiffusionConfig, generator: torch.Generator | None = None,
                         train: bool = True, prosody: torch.Tensor | None = None) -> dict:
    """The emotion head's cross-entropy on the labelled clips (label >= 0; -1 = unlabelled) and each clip's emotion
    weights: the head's probabilities, or (training, with probability ``emotion_label_prob``) its true one-hot.
    The head reads the audio for the conditioning identity (detached: the emotion loss does not move identities);
    heads on prosody hear ``prosody`` (B, P) (``model.prosody``)."""
    logits = model.denoiser.emotion_logits(feats, mask, identity.detach(), prosody)  # (B, K)
    probs = torch.softmax(logits, dim=-1)
    B, K = logits.shape
    if label is None:
        label = torch.full((B,), -1, dtype=torch.long, device=logits.device)
    known = label >= 0
    zero = logits.sum() * 0.0  # keeps the graph (and DDP's used-parameter bookkeeping) when nothing is labelled
    loss = F.cross_entropy(logits[known], label[known]) if bool(known.any()) else zero
    acc = (logits.argmax(-1) == label)[known].float().mean() if bool(known.any()) else zero.detach()
    use = torch.zeros(B, dtype=torch.bool, device=logits.device)
    if train and cfg.emotion_label_prob > 0 and bool(known.any()):
        use = (torch.rand((B,), generator=generator) < cfg.emotion_label_prob).to(logits.device) & known
        onehot = F.one_hot(label.clamp_min(0), K).to(probs.dtype)
        probs = torch.where(use[:, None], onehot, probs)
    return {"emotion": probs, "emotion_forced": use, "emo_loss": loss, "emo_acc": acc}


def training_loss(model: TalkerModel, schedule: NoiseSchedule, batch: dict, cfg: DiffusionConfig,
                  generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Teacher loss: x0 reconstruction + velocity_weight · velocity + identity_weight · InfoNCE
    (+ emotion_weight · the emotion head's cross-entropy, for models with one).

    batch: audio (B, N), audio_lengths (B,), motion (B, T, D) raw, mask (B, T), speaker (B,), num_frames (B,), and
    optionally emotion (B,) label indices (-1 = unlabelled).
    """
    cond = conditioning(model, batch, cfg, generator)
    mask = cond["mask"] & batch["mask"]
    x0 = model.normalise(batch["motion"]) * mask[..., None]  # (B, T, D)
    B = x0.shape[0]
    # random draws come from a CPU generator (reproducible everywhere) and are then moved to the model's device
    t = torch.randint(0, schedule.num_train_timesteps, (B,), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    z_t = q_sample(schedule, x0, t, noise)
    x0_pred = model.denoiser(z_t, t, cond["feats"], cond["identity"], mask, emotion=cond["emotion"])
    rec = masked_mse(x0_pred, x0, mask)
    vel = velocity_loss(x0_pred, x0, mask)
    loss = rec + cfg.velocity_weight * vel + cfg.identity_weight * cond["id_loss"]
    out = {"rec": rec.detach(), "vel": vel.detach(), "id": cond["id_loss"].detach(), "id_acc": cond["id_acc"].detach()}
    if "emo_loss" in cond:
        loss = loss + cfg.emotion_weight * cond["emo_loss"]
        out.update(emo=cond["emo_loss"].detach(), emo_acc=cond["emo_acc"].detach())
    return {"loss": loss, **out}


@torch.no_grad()
def sample(model: TalkerModel, schedule: NoiseSchedule, feats: torch.Tensor, mask: torch.Tensor,
           identity: torch.Tensor, steps: int, noise: torch.Tensor,
           sampler: Literal["ddim", "ddpm"] = "ddim", generator: torch.Generator | None = None,
           known: torch.Tensor | None = None, known_mask: torch.Tensor | None = None,
           progress: Callable[[int, int], None] | None = None, reencode: Callable[[], torch.Tensor] | None = None,
           emotion: torch.Tensor | None = None) -> torch.Tensor:
    """Draw x0 (normalised space) by walking the nested ``steps`` grid from pure noise.

    Args:
        feats: (B, T, C) audio features, computed once by the caller.
        identity: (B, E) conditioning vectors.
        noise: (B, T, D) the starting z_T (seeded by the caller, one generator per sample).
        sampler: "ddim" (deterministic, eta = 0) or "ddpm" (ancestral; uses ``generator`` for its noise).
        known, known_mask: optional (B, T, D) normalised motion and (B, T) bool: frames to hold fixed (diffusion
            inpainting, used to stitch long audio windows): after each intermediate step they are replaced by the
            forward-noised known motion at the new noise level.
        reencode: optional callable returning fresh features each step (only to measure what encoding once saves).
        emotion: optional (B, K) emotion weights (models with an emotion head); None reads them from the audio.
    """
    B = noise.shape[0]
    z = noise * mask[..., None]
    grid = schedule.grid(steps)
    known_noise = torch.randn(noise.shape, generator=generator).to(z.device) if known is not None else None
    for i, t_int in enumerate(grid):
        t = torch.full((B,), t_int, dtype=torch.long, device=z.device)
        t_next = schedule.next_t(t, steps)
        if reencode is not None:
            feats = reencode()
        # (the emotion keyword only when given: denoisers written before it, and test doubles, still plug in)
        x0_pred = model.denoiser(z, t, feats, identity, mask, **({} if emotion is None else {"emotion": emotion}))
        if sampler == "ddim":
            z = ddim_step(schedule, z, x0_pred, t, t_next)
        elif t_int == grid[-1]:
            z = x0_pred
        else:
            z = ddpm_step(schedule, z, x0_pred, t, t_next, torch.randn(z.shape, generator=generator).to(z.device))
        if known is not None and t_int != grid[-1]:
            # hold the known frames at the new noise level; the final prediction is left free so the caller can
            # cross-fade it with the known motion
            z = torch.where(known_mask[..., None], q_sample(schedule, known, t_next, known_noise), z)
        z = z * mask[..., None]
        if progress is not None:
            progress(i + 1, len(grid))
    return z

