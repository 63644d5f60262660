"""The whole network of one checkpoint: audio encoder + identity library + denoiser + motion normalisation.

Holds no diffusion logic (that is ``diffusion.py``); it only knows how to turn audio into features, identities into
conditioning vectors, and raw motion to and from the normalised space the denoiser works in.
"""

from __future__ import annotations

import torch
from torch import nn

from diffusiontalker.config import ModelConfig
from diffusiontalker.denoiser import Denoiser
from diffusiontalker.encoders import build_encoder
from diffusiontalker.identity import IdentityLibrary
from diffusiontalker.prosody import prosody_features


class TalkerModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg)
        self.identity = IdentityLibrary(cfg.identity_names, cfg.audio_dim, cfg.identity_dim)
        self.denoiser = Denoiser(cfg)
        D = cfg.motion_dim
        # per-channel statistics of the training motion (raw units); the denoiser works on (m - mean) / std
        self.register_buffer("motion_mean", torch.zeros(D))
        self.register_buffer("motion_std", torch.ones(D))
        if cfg.kind == "vertex":
            self.register_buffer("template", torch.zeros(D // 3, 3))  # (V, 3) neutral mesh
            self.register_buffer("faces", torch.zeros(cfg.num_faces, 3, dtype=torch.int32))  # (F, 3)

    def set_normalisation(self, mean, std) -> None:
        self.motion_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.motion_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3))

    def normalise(self, motion: torch.Tensor) -> torch.Tensor:
        return (motion - self.motion_mean) / self.motion_std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.motion_std + self.motion_mean

    def encode(self, audio: torch.Tensor, lengths: torch.Tensor | None = None,
               num_frames: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio (B, N) -> features (B, T, C) and frame mask (B, T). Run once per clip."""
        return self.encoder(audio, lengths, num_frames)

    def prosody(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor | None:
        """The clips' prosody (B, P) when the emotion head hears it (``emotion_features="prosody"``), else None."""
        if self.denoiser.emotion_features != "prosody":
            return None
        return prosody_features(audio, lengths)

    def read_emotion(self, audio: torch.Tensor, lengths: torch.Tensor | None, feats: torch.Tensor,
                     mask: torch.Tensor, identity: torch.Tensor) -> torch.Tensor | None:
        """The emotion head's probabilities (B, K) for clips — audio (B, N) and its features (B, T, C) — heard for
        the speakers ``identity`` (B, E); None for a model without a head. Measures the prosody if the head hears
        it."""
        if self.denoiser.emotion_head is None:
            return None
        logits = self.denoiser.emotion_logits(feats, mask, identity, self.prosody(audio, lengths))
        return torch.softmax(logits, dim=-1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
