"""Shared fixtures: tiny real checkpoints and short real audio, built in temporary directories (no network)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)  # tiny models: thread synchronisation costs more than it saves

from diffusiontalker.audio import SAMPLE_RATE, save_wav  # noqa: E402
from diffusiontalker.checkpoint import save_checkpoint, write_ladder  # noqa: E402
from diffusiontalker.config import override, preset  # noqa: E402
from diffusiontalker.model import TalkerModel  # noqa: E402

IDENTITIES = ["ava", "ben", "cy"]


def speechlike(seconds: float = 1.5, f0: float = 140.0, seed: int = 0, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A voiced, syllable-modulated harmonic signal: enough structure for encoders, no speech synthesiser needed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    voice = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2  # ~4 syllables per second
    return (0.2 * voice * envelope + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


def make_checkpoint(directory: Path, steps: int = 8, kind: str = "blendshape", seed: int = 0,
                    identities: list[str] | None = None, vertices: int = 10, emotions: list[str] | None = None,
                    emotion_features: str = "stats") -> Path:
    """A tiny random (untrained) checkpoint with non-trivial output weights, so samples depend on their inputs;
    ``emotions``: give it an emotion head over these names (its projection randomised too), hearing
    ``emotion_features`` ("stats" or "prosody", as the shipped default)."""
    torch.manual_seed(seed)
    names = identities or IDENTITIES
    overrides = {"model__identity_names": names, "diffusion__steps": steps}
    if emotions:
        overrides |= {"model__emotion_head": True, "model__emotion_names": list(emotions),
                      "model__emotion_features": emotion_features}
    if kind == "vertex":
        overrides |= {"model__kind": "vertex", "model__motion_dim": 3 * vertices, "model__channel_names": None}
    cfg = override(preset("tiny"), **overrides)
    model = TalkerModel(cfg.model)
    with torch.no_grad():  # zero-initialised outputs would make every sample identical; give them weights
        torch.nn.init.normal_(model.denoiser.output.weight, std=0.05)  # tiny preset: full-rank output
        if emotions:
            torch.nn.init.normal_(model.denoiser.emotion_proj.weight, std=0.5)
        if kind == "blendshape":
            model.set_normalisation(np.full(52, 0.2), np.full(52, 0.1))
        else:
            model.template.copy_(torch.randn(vertices, 3))
    return save_checkpoint(model, cfg, directory, meta={"data": "random init (test)", "licence": "test"})


def make_ladder(directory: Path, steps: tuple[int, ...] = (8, 4, 2, 1), kind: str = "blendshape",
                emotions: list[str] | None = None, emotion_features: str = "stats") -> Path:
    rungs = {}
    for i, s in enumerate(steps):
        name = "teacher" if i == 0 else f"student-{s}"
        make_checkpoint(directory / name, steps=s, kind=kind, seed=i, emotions=emotions,
                        emotion_features=emotion_features)
        rungs[s] = name
    write_ladder(directory, rungs, teacher_steps=steps[0])
    return directory


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A single-rung blendshape checkpoint (8 steps) with identities ava/ben/cy."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def tiny_ladder(tmp_path_factory) -> Path:
    """A ladder dir: teacher (8 steps) + students 4/2/1, tiny random models."""
    return make_ladder(tmp_path_factory.mktemp("ladder") / "ladder")


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    save_wav(path, speechlike(1.5))
    return path
