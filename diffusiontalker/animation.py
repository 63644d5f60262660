"""The result of one generation: motion curves plus everything needed to render, export and explain them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from diffusiontalker.arkit import ARKIT_52
from diffusiontalker.audio import FPS, SAMPLE_RATE
from diffusiontalker.errors import DiffusionTalkerError

Kind = Literal["blendshape", "vertex"]


@dataclass
class Animation:
    """One animation.

    Attributes:
        values: (T, 52) ARKit coefficients in Apple order for ``kind="blendshape"``; (T, V, 3) absolute vertex
            positions for ``kind="vertex"``.
        fps: frames per second of ``values``.
        kind: "blendshape" or "vertex".
        names: channel names for blendshapes (ARKit-52, Apple order); None for vertices.
        template: (V, 3) neutral mesh for vertex animations (``values - template`` are the offsets).
        faces: (F, 3) triangle indices of the template mesh, when known (needed to render/export vertex motion).
        audio: mono float32 speech at 16 kHz the animation was generated from (for muxing into video), if any.
        seed: the seed that produced this sample.
        steps: the number of denoising steps used.
        identity: the identity used: a name, "auto:<name>", or a mix description.
        identity_scores: match probability per identity name (from the audio), if computed.
        emotion: the emotion conditioned on: a name, "auto:<name>" (read from the audio), or a mix description;
            None for models without an emotion head.
        emotion_scores: the emotion head's probability per emotion name (from the audio), if it has one.
        timings: seconds spent per stage (load, encode, match, sample, ...).
        model: a short label of the model that produced it (e.g. "student-8").
    """

    values: np.ndarray
    fps: float = FPS
    kind: Kind = "blendshape"
    names: tuple[str, ...] | None = ARKIT_52
    template: np.ndarray | None = None
    faces: np.ndarray | None = None
    audio: np.ndarray | None = None
    seed: int | None = None
    steps: int | None = None
    identity: str | None = None
    identity_scores: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    model: str = ""
    emotion: str | None = None
    emotion_scores: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float32)
        if self.kind == "blendshape":
            if self.values.ndim != 2:
                raise DiffusionTalkerError(f"blendshape values must be (T, D), got {self.values.shape}")
            if self.names is None:
                self.names = ARKIT_52
            self.names = tuple(self.names)
            if len(self.names) != self.values.shape[1]:
                raise DiffusionTalkerError(
                    f"{len(self.names)} names for {self.values.shape[1]} blendshape channels")
        elif self.kind == "vertex":
            if self.values.ndim != 3 or self.values.shape[2] != 3:
                raise DiffusionTalkerError(f"vertex values must be (T, V, 3), got {self.values.shape}")
            self.names = None
            if self.template is not None:
                self.template = np.asarray(self.template, dtype=np.float32)
                if self.template.shape != self.values.shape[1:]:
                    raise DiffusionTalkerError(
                        f"template shape {self.template.shape} does not match vertices {self.values.shape[1:]}")
        else:
            raise DiffusionTalkerError(f"kind must be 'blendshape' or 'vertex', got {self.kind!r}")
        if self.fps <= 0:
            raise DiffusionTalkerError(f"fps must be positive, got {self.fps}")

    @property
    def num_frames(self) -> int:
        return int(self.values.shape[0])

    @property
    def duration(self) -> float:
        """Seconds covered by the frames."""
        return self.num_frames / float(self.fps)

    @property
    def audio_sample_rate(self) -> int:
        return SAMPLE_RATE

    def channel(self, name: str) -> np.ndarray:
        """The (T,) curve of one blendshape channel, by name."""
        if self.kind != "blendshape" or self.names is None:
            raise DiffusionTalkerError("channel() needs a blendshape animation")
        try:
            return self.values[:, self.names.index(name)]
        except ValueError:
            raise DiffusionTalkerError(f"no channel {name!r}; channels are ARKit names such as 'jawOpen'") from None

    def metadata(self) -> dict:
        """JSON-serialisable description (the sidecar written next to .npy exports)."""
        return {
            "kind": self.kind,
            "fps": self.fps,
            "num_frames": self.num_frames,
            "shape": list(self.values.shape),
            "names": list(self.names) if self.names is not None else None,
            "seed": self.seed,
            "steps": self.steps,
            "identity": self.identity,
            "identity_scores": {k: float(v) for k, v in self.identity_scores.items()},
            "emotion": self.emotion,
            "emotion_scores": {k: float(v) for k, v in self.emotion_scores.items()},
            "timings": {k: float(v) for k, v in self.timings.items()},
            "model": self.model,
        }
