"""The denoising network f(x_t, t, audio, identity, mask) -> x0. It knows nothing of noise schedules.

Architecture: a bidirectional transformer with band-limited self-attention (each frame sees ±``attn_window``
frames) and a learned relative-position bias, conditioned on the diffusion time and the identity embedding by
adaLN-Zero (Peebles & Xie 2023). Audio features (already at the motion frame rate) are concatenated to the noisy
motion at the input; with ``global_context`` their utterance-level mean and std join the condition vector too.
With an emotion head (``ModelConfig.has_emotion``) the same statistics (or, with ``emotion_features="prosody"``, the
clip's pitch, melody and pace measured from the waveform), heard against the speaker's identity vector, are read as
emotion probabilities, which (or a named emotion's one-hot, chosen at inference) join the condition vector as well.

Why a band-limited transformer and not FaceDiffuser's bi-GRU: the bias and band depend only on frame offsets, so a
model trained on 2–6 s windows runs unchanged on minutes of audio (the prototype ran 10 s clips after training on
2–4 s windows), and attention is parallel over time where a GRU walks T frames one by one — the GRU's sequential
scan is what a 2-core CPU pays for on every denoising step (``bench/`` measures both).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from diffusiontalker.config import ModelConfig
from diffusiontalker.prosody import NUM_PROSODY


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (B,) -> (B, dim) (Vaswani et al. 2017, as in DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def band_structure(mask: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Relative offsets (T, T) (key - query) and the allowed-attention mask (B, 1, T, T): inside the band and on a
    valid key (a padded query may always see itself, so no row is empty)."""
    T = mask.shape[1]
    idx = torch.arange(T, device=mask.device)
    rel = idx[None, :] - idx[:, None]
    eye = torch.eye(T, dtype=torch.bool, device=mask.device)
    allowed = (rel.abs() <= window)[None] & (mask[:, None, :] | eye[None])  # (B, T, T)
    return rel, allowed[:, None]


def pooled_stats(feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean and standard deviation over the valid frames: (B, T, C), mask (B, T) -> (B, 2C).

    Padding cannot move them, so a clip gives the same vector alone or in a padded batch.
    """
    m = mask[..., None].to(feats.dtype)  # (B, T, 1)
    n = m.sum(1).clamp_min(1.0)  # (B, 1)
    mean = (feats * m).sum(1) / n
    var = (((feats - mean[:, None]) * m) ** 2).sum(1) / n
    return torch.cat([mean, torch.sqrt(var + 1e-6)], dim=-1)


class BandAttention(nn.Module):
    """Multi-head self-attention restricted to |i - j| <= window, plus a learned bias per head and offset."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.rel_bias = nn.Parameter(torch.zeros(heads, 2 * window + 1))

    def attn_bias(self, rel: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """Additive bias (B, H, T, T): this layer's relative bias inside the band, -inf where not ``allowed``."""
        bias = self.rel_bias[:, rel.clamp(-self.window, self.window) + self.window]  # (H, T, T)
        return bias[None].masked_fill(~allowed, float("-inf"))

    def forward(self, x: torch.Tensor, rel: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        bias = self.attn_bias(rel, allowed)
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)  # (B, H, T, d)
        # no attention dropout: on CPU it materialises a (B, H, T, T) Bernoulli mask per layer for little gain;
        # the feed-forward dropout regularises instead
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.out(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    """Pre-norm transformer block with adaLN-Zero modulation from the condition vector."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False)
        self.attn = BandAttention(d, cfg.n_heads, cfg.attn_window)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False)
        self.ff = nn.Sequential(nn.Linear(d, cfg.ff_mult * d), nn.GELU(), nn.Dropout(cfg.dropout),
                                nn.Linear(cfg.ff_mult * d, d))
        self.modulation = nn.Linear(d, 6 * d)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, rel: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond)[:, None].chunk(6, dim=-1)  # (B, 1, d)
        x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1, rel, allowed)
        return x + gate2 * self.ff(self.norm2(x) * (1 + scale2) + shift2)


class Denoiser(nn.Module):
    """Predicts clean motion x0 (B, T, D) from noisy motion, timestep, audio features, identity and mask."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.time_dim = d
        self.window = cfg.attn_window
        r = cfg.motion_rank
        # a vertex model's D = 3V can be tens of thousands: a low-rank projection keeps the weights small
        self.motion_in = nn.Linear(cfg.motion_dim, r, bias=False) if r else nn.Identity()
        self.input = nn.Linear((r or cfg.motion_dim) + cfg.audio_dim, d)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.identity_proj = nn.Linear(cfg.identity_dim, d)
        # utterance context: masked mean and std of the audio features -> the condition vector (adaLN), beside
        # time and identity
        self.context_proj = nn.Linear(2 * cfg.audio_dim, d) if cfg.global_context else None
        # emotion: pooled statistics + the speaker's identity vector -> logits over the emotion names (an emotion is
        # heard as a departure from the speaker's usual pitch and pace, so the head needs to know whose voice it is:
        # on the synthetic set a linear read-out of the statistics names 59% of val clips, 83% once centred on the
        # speaker); probabilities -> condition vector. The projection starts at zero, so adding the head to a
        # trained model (warm start) leaves it unchanged at first.
        # With ``emotion_features="prosody"`` the head hears measured pitch, melody and pace instead (standardised by
        # buffers set from the training data), which the caller computes from the waveform and passes in.
        self.emotion_head = self.emotion_proj = None
        self.emotion_features = cfg.emotion_features if cfg.has_emotion else None
        if cfg.has_emotion:
            C, K = cfg.audio_dim, len(cfg.emotion_names)
            heard = NUM_PROSODY if self.emotion_features == "prosody" else 2 * C
            if self.emotion_features == "prosody":
                self.register_buffer("prosody_mean", torch.zeros(NUM_PROSODY))
                self.register_buffer("prosody_std", torch.ones(NUM_PROSODY))
            self.emotion_head = nn.Sequential(nn.Linear(heard + cfg.identity_dim, C), nn.GELU(), nn.Linear(C, K))
            self.emotion_proj = nn.Linear(K, d)
            nn.init.zeros_(self.emotion_proj.weight)
            nn.init.zeros_(self.emotion_proj.bias)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False)
        self.final_modulation = nn.Linear(d, 2 * d)
        self.output = nn.Sequential(nn.Linear(d, r), nn.Linear(r, cfg.motion_dim)) if r else nn.Linear(
            d, cfg.motion_dim)
        last = self.output[-1] if r else self.output
        for layer in (self.final_modulation, last):  # zero-initialised output: starts predicting x0 = 0
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def emotion_logits(self, audio: torch.Tensor, mask: torch.Tensor, identity: torch.Tensor,
                       prosody: torch.Tensor | None = None) -> torch.Tensor:
        """The emotion head's reading of the audio features (B, T, C) of a speaker (identity vectors (B, E): whose
        voice it is, e.g. the identity matched from the audio) -> logits (B, K) over ``emotion_names``. Heads on
        prosody need the clips' ``prosody_features`` (B, P) (from the waveform: ``TalkerModel.prosody``)."""
        if self.emotion_head is None:
            raise ValueError("this model has no emotion head")
        if self.emotion_features == "prosody":
            if prosody is None:
                raise ValueError("this model's emotion head hears prosody: pass prosody=model.prosody(audio, lengths)")
            return self.hear_prosody(prosody.to(audio.dtype), identity)
        return self._emotion(pooled_stats(audio, mask), identity)

    def hear_prosody(self, prosody: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        """A prosody head's logits (B, K) for measured prosody (B, P), standardised here, and identities (B, E)."""
        return self._emotion((prosody - self.prosody_mean) / self.prosody_std, identity)

    def set_prosody_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise the prosody the head hears with the training data's mean and std (P,)."""
        self.prosody_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.prosody_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-4))

    def _emotion(self, heard: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        return self.emotion_head(torch.cat([heard, identity.to(heard.dtype)], dim=-1))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, audio: torch.Tensor, identity: torch.Tensor,
                mask: torch.Tensor, emotion: torch.Tensor | None = None) -> torch.Tensor:
        """x_t (B, T, D), t (B,) long, audio (B, T, C), identity (B, E), mask (B, T) bool -> x0 (B, T, D).

        emotion: optional (B, K) weights over the emotion names (one-hot for a named emotion); None reads them from
        the audio with the emotion head, for the speaker ``identity``. Ignored by models without an emotion head.
        """
        cond = self.time_mlp(timestep_embedding(t, self.time_dim)) + self.identity_proj(identity)  # (B, d)
        stats = pooled_stats(audio, mask) if self.context_proj is not None or self.emotion_head is not None else None
        if self.context_proj is not None:
            cond = cond + self.context_proj(stats)
        if self.emotion_head is not None:
            if emotion is None:
                if self.emotion_features == "prosody":
                    raise ValueError("this model's emotion head hears prosody, which the denoiser cannot measure: "
                                     "pass emotion= (emotion_logits(..., prosody=) gives the head's reading)")
                emotion = torch.softmax(self._emotion(stats, identity), dim=-1)
            cond = cond + self.emotion_proj(emotion.to(cond.dtype))
        cond = F.silu(cond)
        h = self.input(torch.cat([self.motion_in(x_t), audio], dim=-1))  # (B, T, d)
        rel, allowed = band_structure(mask, self.window)
        for block in self.blocks:
            h = block(h, cond, rel, allowed)
        shift, scale = self.final_modulation(cond)[:, None].chunk(2, dim=-1)
        return self.output(self.final_norm(h) * (1 + scale) + shift) * mask[..., None]
