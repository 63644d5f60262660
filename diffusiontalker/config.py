"""Configuration dataclasses and the presets ``tiny`` (tests), ``cpu`` (the shipped default) and ``paper`` (GPU).

Every checkpoint stores these in its ``config.json``; they are all that is needed to rebuild the model. Values
are validated on creation, so a bad config fails where it is written, with the allowed choices listed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from diffusiontalker.arkit import ARKIT_52
from diffusiontalker.audio import FPS, SAMPLE_RATE
from diffusiontalker.errors import ConfigError

EncoderKind = Literal["mel", "hubert", "wav2vec2"]
OutputKind = Literal["blendshape", "vertex"]
ENCODER_KINDS = ("mel", "hubert", "wav2vec2")
OUTPUT_KINDS = ("blendshape", "vertex")
FREEZE_CHOICES = ("none", "cnn", "all")
EMOTION_FEATURES = ("stats", "prosody")


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of {list(allowed)}")


def _positive(obj: Any, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        if not v > 0:
            raise ConfigError(f"{type(obj).__name__}.{n} must be positive, got {v!r}")


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


@dataclass
class ModelConfig:
    """Network dimensions: audio encoder, identity library and the x0 denoiser."""

    kind: OutputKind = "blendshape"
    motion_dim: int = 52  # D: 52 for ARKit, 3V for vertex offsets
    channel_names: list[str] | None = field(default_factory=lambda: list(ARKIT_52))
    fps: int = FPS
    num_faces: int = 0  # vertex models: triangles of the template mesh stored with the weights (0 = not stored)
    sample_rate: int = SAMPLE_RATE
    # audio encoder
    encoder: EncoderKind = "mel"
    encoder_path: str | None = None  # local dir or hub id for hubert / wav2vec2
    encoder_config: dict | None = None  # the backbone's own config, stored so a checkpoint rebuilds it offline
    freeze_encoder: Literal["none", "cnn", "all"] = "cnn"
    n_mels: int = 80
    audio_dim: int = 128  # C: encoder output channels handed to the denoiser
    encoder_layers: int = 3  # conv blocks of the mel encoder
    # identity library (the personalisation adapter)
    identity_names: list[str] = field(default_factory=lambda: ["default"])
    identity_dim: int = 64
    # denoiser
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    ff_mult: int = 4
    dropout: float = 0.1
    attn_window: int = 45  # frames each side a frame attends to (band-limited attention, ±1.5 s at 30 fps)
    motion_rank: int = 0  # > 0: low-rank motion input/output projections (D -> rank -> d_model), for large 3V
    # condition every layer on the utterance's pooled audio statistics as well (mean and std of the features over
    # its frames): what a +-1.5 s attention band cannot see, such as an emotion carried by the whole sentence's pace
    # and pitch; long audio generated in windows gets each window's statistics. False in checkpoints written before
    # the option existed.
    global_context: bool = False
    # emotion, the second personalisation axis: a head reads the emotion from the same pooled audio statistics and
    # the speaker's identity vector (trained with cross-entropy on the clips' emotion labels); its probabilities, or
    # a named emotion chosen at inference, join the condition vector. ``emotion_head`` asks for it; ``emotion_names``
    # come from the training data's labels (empty: data without labels, or a checkpoint written before the option
    # existed -> no head).
    emotion_head: bool = False
    emotion_names: list[str] = field(default_factory=list)
    # what the emotion head hears besides the identity: "stats" (the pooled audio statistics above) or "prosody"
    # (pitch, melody and pace measured from the waveform, ``diffusiontalker/prosody.py``: names 90-94 % of the
    # synthetic set's validation and test clips where the statistics name 75-83 %); ``train/fit_emotion_head.py``
    # refits a trained ladder's heads on prosody.
    emotion_features: str = "stats"

    def __post_init__(self) -> None:
        _choice("kind", self.kind, OUTPUT_KINDS)
        _choice("encoder", self.encoder, ENCODER_KINDS)
        _choice("freeze_encoder", self.freeze_encoder, FREEZE_CHOICES)
        _choice("emotion_features", self.emotion_features, EMOTION_FEATURES)
        if self.motion_rank < 0:
            raise ConfigError(f"motion_rank must be >= 0, got {self.motion_rank}")
        _positive(self, "motion_dim", "fps", "sample_rate", "n_mels", "audio_dim", "identity_dim", "d_model",
                  "n_layers", "n_heads", "ff_mult", "attn_window", "encoder_layers")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.encoder != "mel" and not (self.encoder_path or self.encoder_config):
            raise ConfigError(f"encoder={self.encoder!r} needs encoder_path: a local model directory or a hub id")
        if self.kind == "blendshape":
            if self.channel_names is None or len(self.channel_names) != self.motion_dim:
                raise ConfigError(f"blendshape models need {self.motion_dim} channel_names")
        elif self.motion_dim % 3:
            raise ConfigError(f"vertex models need motion_dim = 3 x vertices, got {self.motion_dim}")
        if not self.identity_names or len(set(self.identity_names)) != len(self.identity_names):
            raise ConfigError("identity_names must be a non-empty list of unique names")
        if len(set(self.emotion_names)) != len(self.emotion_names):
            raise ConfigError(f"emotion_names must be unique, got {self.emotion_names}")
        if self.emotion_names and not self.emotion_head:
            raise ConfigError("emotion_names are set but emotion_head is False; set emotion_head=True or clear them")

    @property
    def has_emotion(self) -> bool:
        """True when the denoiser carries an emotion head (asked for, and the data had at least two labels)."""
        return self.emotion_head and len(self.emotion_names) >= 2


@dataclass
class DiffusionConfig:
    """The noise schedule, the sampler grid and the training loss weights."""

    num_train_timesteps: int = 1024  # T of the cosine schedule
    steps: int = 512  # the DDIM step count this checkpoint samples with (its rung on the distillation ladder)
    velocity_weight: float = 1.0  # weight of the velocity (frame difference) term of the x0 loss
    identity_weight: float = 0.1  # lambda of the InfoNCE identity loss
    identity_dropout: float = 0.1  # probability of conditioning on the mean identity during training
    emotion_weight: float = 0.1  # weight of the emotion head's cross-entropy (models with an emotion head)
    # probability that a labelled clip is conditioned on its true emotion (one-hot) rather than the head's reading of
    # its audio: the denoiser learns what each named emotion means AND to work from the head's soft guess
    emotion_label_prob: float = 0.5

    def __post_init__(self) -> None:
        _positive(self, "num_train_timesteps", "steps")
        if self.emotion_weight < 0 or not 0 <= self.emotion_label_prob <= 1:
            raise ConfigError("emotion_weight must be >= 0 and emotion_label_prob in [0, 1]")
        if not _is_power_of_two(self.steps) or self.num_train_timesteps % self.steps:
            raise ConfigError(f"steps={self.steps} must be a power of two that divides "
                              f"num_train_timesteps={self.num_train_timesteps} (e.g. 512, 8, 1)")
        if self.velocity_weight < 0 or self.identity_weight < 0 or not 0 <= self.identity_dropout < 1:
            raise ConfigError("loss weights must be >= 0 and identity_dropout in [0, 1)")


@dataclass
class TrainConfig:
    """Teacher training."""

    iterations: int = 20_000
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 500
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    window_min: float = 2.0  # seconds
    window_max: float = 6.0
    augment: bool = True
    seed: int = 0
    log_every: int = 50
    eval_every: int = 1000
    save_every: int = 1000
    num_workers: int = 0

    def __post_init__(self) -> None:
        _positive(self, "iterations", "batch_size", "lr", "window_min", "window_max", "log_every", "eval_every",
                  "save_every")
        if self.window_min > self.window_max:
            raise ConfigError("window_min must not exceed window_max")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclass
class DistillConfig:
    """Progressive distillation (Salimans & Ho 2022): halve the step count each round from ``start_steps``."""

    start_steps: int = 512
    target_steps: int = 8
    iterations_per_round: int = 1000
    batch_size: int = 16
    lr: float = 1e-4
    warmup: int = 50
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    seed: int = 0

    def __post_init__(self) -> None:
        _positive(self, "iterations_per_round", "batch_size", "lr")
        for n in ("start_steps", "target_steps"):
            if not _is_power_of_two(getattr(self, n)):
                raise ConfigError(f"{n} must be a power of two, got {getattr(self, n)}")
        if self.target_steps >= self.start_steps:
            raise ConfigError("target_steps must be smaller than start_steps")


@dataclass
class Config:
    """Everything a checkpoint needs: model, diffusion, and (for the record) how it was trained."""

    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Config:
        """Rebuild from ``to_dict()``; unknown sections or keys raise ConfigError naming them."""
        if not isinstance(data, dict):
            raise ConfigError("config must be a JSON object")
        sections = {f.name: f.type for f in fields(cls)}
        unknown = set(data) - set(sections)
        if unknown:
            raise ConfigError(f"unknown config section(s) {sorted(unknown)}; expected {sorted(sections)}")
        kwargs = {}
        for name, klass in (("model", ModelConfig), ("diffusion", DiffusionConfig), ("train", TrainConfig),
                            ("distill", DistillConfig)):
            kwargs[name] = _build(klass, data.get(name, {}), name)
        return cls(**kwargs)


def _build(klass: type, values: dict, section: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"config section {section!r} must be an object")
    known = {f.name for f in fields(klass)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in config section {section!r}")
    try:
        return klass(**values)
    except TypeError as e:
        raise ConfigError(f"bad config section {section!r}: {e}") from None


def preset(name: str, **overrides: Any) -> Config:
    """A named preset; ``overrides`` are ``section__key=value`` pairs, e.g. ``train__iterations=100``.

    - ``tiny``: a few thousand parameters, for tests.
    - ``cpu``: the shipped default (embedded mel encoder, ~1-2 M parameters), trainable on a 2-core CPU in an hour.
    - ``paper``: HuBERT-base features and a paper-sized denoiser, for GPU training on BEAT/VOCASET.
    """
    if name == "tiny":
        cfg = Config(
            model=ModelConfig(audio_dim=16, encoder_layers=1, identity_dim=8, d_model=32, n_layers=1, n_heads=2,
                              ff_mult=2, dropout=0.0, attn_window=15),
            train=TrainConfig(iterations=50, batch_size=4, warmup=5, log_every=10, eval_every=25, save_every=25,
                              window_min=1.0, window_max=2.0, augment=False),
            distill=DistillConfig(start_steps=8, target_steps=4, iterations_per_round=10, batch_size=4, warmup=2),
        )
    elif name == "cpu":
        # the recipe of checkpoints/default: no dropout and a deeper encoder (the model under-fits, it does not
        # over-fit), a lighter identity loss (0.03), the utterance context; chosen by short screening runs (README);
        # and an emotion head wherever the data has emotion labels
        cfg = Config(
            model=ModelConfig(audio_dim=128, encoder_layers=5, identity_dim=64, d_model=128, n_layers=4,
                              n_heads=4, ff_mult=3, dropout=0.0, attn_window=45, global_context=True,
                              emotion_head=True),
            diffusion=DiffusionConfig(identity_weight=0.03),
            train=TrainConfig(iterations=22_000, batch_size=12, lr=6e-4, warmup=200, window_min=2.0, window_max=4.0,
                              eval_every=500, save_every=250),
            distill=DistillConfig(start_steps=512, target_steps=1, iterations_per_round=300, batch_size=16,
                                  lr=1e-4),
        )
    elif name == "paper":
        cfg = Config(
            model=ModelConfig(encoder="hubert", encoder_path="facebook/hubert-base-ls960", freeze_encoder="cnn",
                              audio_dim=256, identity_dim=128, d_model=512, n_layers=8, n_heads=8, ff_mult=4,
                              dropout=0.1, attn_window=90),
            train=TrainConfig(iterations=100_000, batch_size=32, lr=1e-4, warmup=2000, num_workers=4),
            distill=DistillConfig(start_steps=512, target_steps=8, iterations_per_round=5000, batch_size=32),
        )
    else:
        raise ConfigError(f"unknown preset {name!r}; choose one of ['tiny', 'cpu', 'paper']")
    return override(cfg, **overrides)


def override(cfg: Config, **overrides: Any) -> Config:
    """Return a copy of ``cfg`` with ``section__key=value`` overrides applied and re-validated."""
    data = cfg.to_dict()
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if section not in data or name not in data[section]:
            raise ConfigError(f"unknown override {key!r}; use section__key with section in {sorted(data)}")
        data[section][name] = value
    return Config.from_dict(data)


def replace(obj: Any, **changes: Any) -> Any:
    """dataclasses.replace that re-runs validation."""
    return dataclasses.replace(obj, **changes)
