"""DiffusionTalker: speech-driven 3D face animation with a personalised, distilled diffusion model.

After "DiffusionTalker: Personalization and Acceleration for Speech-Driven 3D Face Diffuser" (arXiv 2311.16565).

    from diffusiontalker import Pipeline
    pipe = Pipeline.from_pretrained("checkpoints/default")
    [anim] = pipe("speech.wav", steps=8, identity="auto", seed=0)
    anim.values  # (T, 52) ARKit blendshape weights at 30 fps
"""

from diffusiontalker.animation import Animation
from diffusiontalker.audio import FPS, SAMPLE_RATE, load_audio
from diffusiontalker.config import Config, DiffusionConfig, DistillConfig, ModelConfig, TrainConfig, preset
from diffusiontalker.errors import (
    AudioError,
    CheckpointError,
    ConfigError,
    DataError,
    DiffusionTalkerError,
    ExportError,
    IdentityError,
    RenderError,
)
from diffusiontalker.pipeline import Pipeline

__version__ = "0.1.0"

__all__ = [
    "FPS", "SAMPLE_RATE", "Animation", "AudioError", "CheckpointError", "Config", "ConfigError", "DataError",
    "DiffusionConfig", "DiffusionTalkerError", "DistillConfig", "ExportError", "IdentityError", "ModelConfig",
    "Pipeline", "RenderError", "TrainConfig", "load_audio", "preset",
]
