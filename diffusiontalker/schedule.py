"""The cosine noise schedule over T=1024 discrete training steps, and the nested DDIM step grids.

Nichol & Dhariwal (2021), eq. 17: alpha_bar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) * pi/2), s = 0.008,
realised through per-step betas clipped at 0.999 (so alpha_bar never reaches exactly 0). Index ``i`` in 0..T-1 is
diffusion time t = i + 1, the convention of diffusers' ``squaredcos_cap_v2`` — which the tests use as an oracle.

In the variance-preserving notation of Salimans & Ho (2022): z_t = alpha_t x + sigma_t eps with
alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t), SNR_t = alpha_t^2 / sigma_t^2.
Index -1 denotes the clean end of the chain (alpha = 1, sigma = 0).

Computed in float64 (after denoising-diffusion-pytorch's habit) and cast on use.
"""

from __future__ import annotations

import math

import torch

from diffusiontalker.errors import ConfigError


class NoiseSchedule:
    """alpha(t), sigma(t), snr(t) for integer timesteps, vectorised over a (B,) tensor of t."""

    def __init__(self, num_train_timesteps: int = 1024, s: float = 0.008, max_beta: float = 0.999):
        self.num_train_timesteps = T = int(num_train_timesteps)

        def f(u: float) -> float:
            return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

        betas = torch.tensor([min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)], dtype=torch.float64)
        self.betas = betas
        alpha_bar = torch.cumprod(1.0 - betas, dim=0)  # (T,)
        # prepend the clean end so index -1 (stored at position 0) has alpha_bar = 1
        self._alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar])  # (T + 1,)

    def alpha_bar(self, t: torch.Tensor | int) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.long)
        if torch.any(t < -1) or torch.any(t >= self.num_train_timesteps):
            raise ValueError(f"timesteps must be in [-1, {self.num_train_timesteps - 1}]")
        return self._alpha_bar.to(t.device)[t + 1]

    def alpha(self, t: torch.Tensor | int) -> torch.Tensor:
        return self.alpha_bar(t).sqrt()

    def sigma(self, t: torch.Tensor | int) -> torch.Tensor:
        return (1.0 - self.alpha_bar(t)).clamp_min(0.0).sqrt()

    def snr(self, t: torch.Tensor | int) -> torch.Tensor:
        ab = self.alpha_bar(t)
        return ab / (1.0 - ab).clamp_min(1e-20)

    def grid(self, steps: int) -> list[int]:
        """The nested DDIM grid for ``steps`` steps, descending: t_i = (i+1)·T/N − 1 for i = N−1 … 0.

        Every grid of N steps is a subset of the grid of 2N steps, so a student's step t -> t'' spans exactly two
        of its teacher's steps t -> t' -> t''. Sampling walks the returned list and ends at the clean index -1.
        """
        T = self.num_train_timesteps
        if steps < 1 or steps & (steps - 1) or T % steps:
            raise ConfigError(f"steps={steps} must be a power of two dividing {T}; e.g. 1, 2, 4, 8, ..., 512")
        stride = T // steps
        return [(i + 1) * stride - 1 for i in reversed(range(steps))]

    def next_t(self, t: torch.Tensor, steps: int) -> torch.Tensor:
        """The grid point after ``t`` on the ``steps`` grid (t - T/N; -1 means clean)."""
        return t - self.num_train_timesteps // steps
