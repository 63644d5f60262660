"""Audio encoders: speech (B, N) at 16 kHz -> features (B, T, C) aligned to the motion frames at 30 fps.

Three kinds behind one interface:

- ``mel``: an embedded front end needing no downloaded weights: a log-mel spectrogram (80 bins, 50 fps, librosa's
  mel filterbank on a torch STFT) with per-utterance level normalisation, then a small trainable conv stack.
- ``hubert`` / ``wav2vec2``: transformers' ``HubertModel`` / ``Wav2Vec2Model`` (FaceDiffuser's choice), from a local
  directory or a hub id, with the CNN feature extractor frozen (option: freeze everything), then a projection.

The encoder runs ONCE per clip; the diffusion sampler reuses its output for every denoising step.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from diffusiontalker.audio import FPS, SAMPLE_RATE
from diffusiontalker.config import ModelConfig
from diffusiontalker.errors import CheckpointError

MEL_HOP = SAMPLE_RATE // 50  # 320 samples: 50 feature frames per second
MEL_WIN = 640  # 40 ms analysis window
MEL_FFT = 1024
LOG_EPS = 1e-10
LEVEL_RANGE = 9.0  # natural-log units kept below the utterance's reference level (~39 dB)
MIN_REFERENCE = -18.0  # reference level used for (near-)silent clips, so silence maps to the floor


def frame_mask(num_frames: torch.Tensor, max_frames: int) -> torch.Tensor:
    """(B,) valid frame counts -> (B, max_frames) bool mask, True on valid frames."""
    return torch.arange(max_frames, device=num_frames.device)[None, :] < num_frames[:, None]


def resample_frames(feats: torch.Tensor, num_frames: int, src_fps: float, dst_fps: float = FPS) -> torch.Tensor:
    """Linearly interpolate (B, N, C) features at ``src_fps`` onto ``num_frames`` frames at ``dst_fps``.

    Frame t of the output sits at time t / dst_fps; the same ratio applies to every batch element, so padding
    at the end of shorter clips never shifts their features.
    """
    B, N, C = feats.shape
    pos = torch.arange(num_frames, device=feats.device, dtype=torch.float32) * (src_fps / dst_fps)  # (T,)
    pos = pos.clamp(0, N - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=N - 1)
    w = (pos - lo.float())[None, :, None]  # (1, T, 1)
    return feats[:, lo] * (1 - w) + feats[:, hi] * w  # (B, T, C)


class AudioEncoder(nn.Module):
    """Common interface: ``forward(audio (B, N), lengths (B,), num_frames (B,)) -> (feats (B, T, C), mask (B, T))``."""

    out_dim: int

    def features(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Backbone features (B, N', C') at their own frame rate, and that rate."""
        raise NotImplementedError

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor | None = None,
                num_frames: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        B, N = audio.shape
        if lengths is None:
            lengths = torch.full((B,), N, dtype=torch.long, device=audio.device)
        if num_frames is None:
            num_frames = torch.round(lengths.float() * FPS / SAMPLE_RATE).long().clamp_min(1)
        feats, rate = self.features(audio, lengths)  # (B, N', C)
        T = int(num_frames.max())
        feats = resample_frames(feats, T, rate)  # (B, T, C)
        mask = frame_mask(num_frames, T)
        return feats * mask[..., None], mask


class MaskedGroupNorm(nn.GroupNorm):
    """``GroupNorm(1, C)`` whose statistics cover only the valid frames: (B, C, N), mask (B, N) -> (B, C, N)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None or self.num_groups != 1:
            return super().forward(x)
        m = mask[:, None, :].to(x.dtype)  # (B, 1, N)
        n = (m.sum((1, 2), keepdim=True) * x.shape[1]).clamp_min(1)
        mean = (x * m).sum((1, 2), keepdim=True) / n
        var = (((x - mean) * m) ** 2).sum((1, 2), keepdim=True) / n
        x = (x - mean) / torch.sqrt(var + self.eps)
        return x * self.weight[None, :, None] + self.bias[None, :, None]


class MelEncoder(AudioEncoder):
    """Log-mel front end + conv stack; the embedded default (no download)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        import librosa

        fb = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=MEL_FFT, n_mels=cfg.n_mels, fmin=40.0, fmax=7600.0)
        self.register_buffer("mel_fb", torch.tensor(fb, dtype=torch.float32), persistent=False)  # (M, F)
        self.register_buffer("window", torch.hann_window(MEL_WIN), persistent=False)
        C = cfg.audio_dim
        layers: list[nn.Module] = [nn.Conv1d(cfg.n_mels, C, 5, padding=2), nn.GELU()]
        for _ in range(cfg.encoder_layers - 1):
            layers += [MaskedGroupNorm(1, C), nn.Conv1d(C, C, 5, padding=2), nn.GELU()]
        self.net = nn.Sequential(*layers)
        self.out_dim = C

    def log_mel(self, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, N) -> level-normalised log-mel (B, M, N') in [-1, 1] at 50 fps.

        Normalisation is part of the model (used in training and inference alike): subtract the utterance's
        reference level (95th percentile of frame energy over its valid frames), keep LEVEL_RANGE below it. A gain
        change is then a no-op, and silence (or digital zero) maps to the floor.
        """
        spec = torch.stft(audio, MEL_FFT, hop_length=MEL_HOP, win_length=MEL_WIN, window=self.window, center=True,
                          return_complex=True).abs() ** 2  # (B, F, N')
        logmel = torch.log(self.mel_fb @ spec + LOG_EPS)  # (B, M, N')
        n_valid = (lengths // MEL_HOP + 1).clamp(max=logmel.shape[-1])
        # the reference uses frames whose window lies inside the clip, so the padding after it cannot move it
        n_ref = torch.minimum(((lengths - MEL_WIN // 2) // MEL_HOP + 1).clamp_min(1), n_valid)
        refs = []
        for b in range(audio.shape[0]):
            energy = logmel[b, :, : int(n_ref[b])].mean(0)  # (N'_b,)
            refs.append(torch.quantile(energy, 0.95))
        ref = torch.stack(refs).clamp_min(MIN_REFERENCE)[:, None, None]  # (B, 1, 1)
        x = (logmel - ref).clamp(-LEVEL_RANGE, LEVEL_RANGE / 3)
        return x / (LEVEL_RANGE / 2) + 1.0

    def features(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, float]:
        x = self.log_mel(audio, lengths)  # (B, M, N')
        # padded frames are zeroed before every conv (as the conv's own zero padding does at a clip's end) and
        # excluded from the norm statistics, so a clip's features do not depend on what it is batched with
        valid = frame_mask((lengths // MEL_HOP + 1).clamp(max=x.shape[-1]), x.shape[-1])  # (B, N')
        keep = valid[:, None].to(x.dtype)  # (B, 1, N')
        for layer in self.net:
            if isinstance(layer, nn.Conv1d):
                x = layer(x * keep)
            elif isinstance(layer, MaskedGroupNorm):
                x = layer(x, valid)
            else:
                x = layer(x)
        return x.transpose(1, 2), SAMPLE_RATE / MEL_HOP  # (B, N', C), 50 fps


class TransformersEncoder(AudioEncoder):
    """HuBERT or wav2vec 2.0 from transformers, projected to ``audio_dim``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.backbone = load_backbone(cfg)
        hidden = self.backbone.config.hidden_size
        self.proj = nn.Linear(hidden, cfg.audio_dim)
        self.out_dim = cfg.audio_dim
        self.freeze = cfg.freeze_encoder
        if self.freeze in ("cnn", "all"):
            for p in self.backbone.feature_extractor.parameters():
                p.requires_grad_(False)
        if self.freeze == "all":
            for p in self.backbone.parameters():
                p.requires_grad_(False)

    def features(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, float]:
        # per-utterance zero-mean / unit-variance over the valid samples (gain invariance)
        mask = frame_mask(lengths, audio.shape[1]).float()
        n = mask.sum(1, keepdim=True).clamp_min(1)
        mean = (audio * mask).sum(1, keepdim=True) / n
        var = (((audio - mean) * mask) ** 2).sum(1, keepdim=True) / n
        x = (audio - mean) / (var + 1e-7).sqrt() * mask
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.freeze != "all"):
            hidden = self.backbone(x, attention_mask=mask.long()).last_hidden_state  # (B, N', H)
        rate = SAMPLE_RATE / math.prod(self.backbone.config.conv_stride)  # 320 samples (50 fps) for the base models
        return self.proj(hidden), rate


def load_backbone(cfg: ModelConfig) -> nn.Module:
    """Build the transformers backbone: from ``cfg.encoder_config`` (weights then come from our checkpoint) or
    ``from_pretrained(cfg.encoder_path)``; a hub id that cannot be reached gives an error asking for a local path."""
    try:
        from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model
    except ImportError as e:  # pragma: no cover
        raise CheckpointError("the hubert/wav2vec2 encoders need transformers: pip install transformers") from e
    model_cls, config_cls = (HubertModel, HubertConfig) if cfg.encoder == "hubert" else (Wav2Vec2Model,
                                                                                          Wav2Vec2Config)
    if cfg.encoder_config:
        return model_cls(config_cls(**cfg.encoder_config))
    try:
        return model_cls.from_pretrained(cfg.encoder_path)
    except Exception as e:
        raise CheckpointError(
            f"could not load the {cfg.encoder} encoder from {cfg.encoder_path!r} ({type(e).__name__}). "
            f"Without network access pass a local directory holding config.json and the weights "
            f"(e.g. one saved by save_pretrained) as encoder_path") from None


def build_encoder(cfg: ModelConfig) -> AudioEncoder:
    if cfg.encoder == "mel":
        return MelEncoder(cfg)
    return TransformersEncoder(cfg)
