"""The identity library: the paper's personalisation adapter.

K learned identity embeddings condition the denoiser (one talking style each). An audio head pools the encoder's
features into a unit vector in the same space, and an InfoNCE loss with a learnable temperature (init 0.07) pulls
each clip towards its speaker's embedding and away from the others. So at inference a speaker's style can be chosen
by name, mixed, or matched from the audio alone (``identity="auto"``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from diffusiontalker.errors import IdentityError


class AttentionPool(nn.Module):
    """Masked attention pooling over time: (B, T, C), (B, T) -> (B, C)."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf"))  # (B, T)
        w = torch.softmax(logits, dim=1)
        return torch.einsum("bt,btc->bc", w, x)


class IdentityLibrary(nn.Module):
    """K named embeddings + the audio -> identity head + the contrastive loss."""

    def __init__(self, names: list[str], audio_dim: int, dim: int):
        super().__init__()
        self.names = list(names)
        K = len(self.names)
        self.embeddings = nn.Parameter(torch.randn(K, dim) / math.sqrt(dim))  # (K, E)
        self.null = nn.Parameter(torch.zeros(dim))  # "no identity" (used for identity dropout)
        self.pool = AttentionPool(audio_dim)
        self.head = nn.Sequential(nn.Linear(audio_dim, audio_dim), nn.GELU(), nn.Linear(audio_dim, dim))
        self.log_temperature = nn.Parameter(torch.tensor(math.log(0.07)))

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp().clamp(0.01, 1.0)

    def unit_embeddings(self) -> torch.Tensor:
        return F.normalize(self.embeddings, dim=-1)  # (K, E)

    def audio_embedding(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encoder features (B, T, C) -> unit identity vector (B, E)."""
        return F.normalize(self.head(self.pool(feats, mask)), dim=-1)

    def logits(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cosine similarity to every identity over the temperature: (B, K)."""
        return self.audio_embedding(feats, mask) @ self.unit_embeddings().T / self.temperature

    def contrastive_loss(self, feats: torch.Tensor, mask: torch.Tensor, speaker: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """InfoNCE (van den Oord et al. 2018) of each clip against the K identities; returns (loss, accuracy)."""
        logits = self.logits(feats, mask)  # (B, K)
        loss = F.cross_entropy(logits, speaker)
        acc = (logits.argmax(-1) == speaker).float().mean()
        return loss, acc

    @torch.no_grad()
    def match(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Probabilities over the K identities for each clip: (B, K)."""
        return torch.softmax(self.logits(feats, mask), dim=-1)

    def embed(self, index: torch.Tensor) -> torch.Tensor:
        """Conditioning vectors for identity indices (B,) -> (B, E); index -1 gives the null identity."""
        table = torch.cat([self.unit_embeddings(), self.null[None]], dim=0)  # (K + 1, E)
        return table[torch.where(index < 0, torch.full_like(index, len(self.names)), index)]

    def mix(self, weights: dict[str, float]) -> torch.Tensor:
        """A weighted blend of named identities -> one unit conditioning vector (E,)."""
        if not weights:
            raise IdentityError("an identity mix needs at least one name with a weight")
        unknown = [n for n in weights if n not in self.names]
        if unknown:
            raise IdentityError(f"unknown identity {unknown}; this model knows {self.names}")
        w = torch.tensor([float(weights.get(n, 0.0)) for n in self.names], dtype=torch.float32)
        if torch.any(w < 0) or float(w.sum()) <= 0:
            raise IdentityError("identity mix weights must be >= 0 and not all zero")
        w = w / w.sum()
        return F.normalize(w.to(self.embeddings.device) @ self.unit_embeddings(), dim=-1)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise IdentityError(f"unknown identity {name!r}; choose 'auto' or one of {self.names}") from None
