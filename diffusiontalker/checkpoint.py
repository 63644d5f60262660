"""Checkpoint directories: ``config.json`` + ``model.safetensors`` + ``MODEL_CARD.md``. Never pickle.

A checkpoint describes itself: its config rebuilds the network (encoder kind, dimensions, output kind and channel
names, fps, identity names) and records the DDIM step count it samples with (its rung on the distillation ladder).
A *ladder* directory holds several rungs (``teacher/``, ``student-8/``, ...) and a ``ladder.json`` manifest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from diffusiontalker.config import Config
from diffusiontalker.errors import CheckpointError, ConfigError
from diffusiontalker.model import TalkerModel

FORMAT = "diffusiontalker-checkpoint"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def save_checkpoint(model: TalkerModel, cfg: Config, directory: str | os.PathLike, card: str | None = None,
                    meta: dict[str, Any] | None = None, half: bool = False) -> Path:
    """Write ``model`` and ``cfg`` to ``directory`` (created). ``half`` stores floating tensors as float16."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if cfg.model.encoder != "mel" and not cfg.model.encoder_config:
        # store the backbone's own config, so the checkpoint rebuilds offline (its weights are in our safetensors)
        backbone = model.encoder.backbone.config.to_dict()
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, encoder_config=backbone))
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        if half and v.is_floating_point():
            v = v.half()
        state[k] = v
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".model.", suffix=".tmp")
    os.close(fd)
    save_file(state, tmp, metadata={"format": FORMAT})
    os.replace(tmp, directory / "model.safetensors")
    doc = {"format": FORMAT, "version": FORMAT_VERSION, "config": cfg.to_dict(), "meta": meta or {}}
    _atomic_write_text(directory / "config.json", json.dumps(doc, indent=2) + "\n")
    if card is not None or not (directory / "MODEL_CARD.md").exists():
        _atomic_write_text(directory / "MODEL_CARD.md", card if card is not None else default_card(cfg, meta or {}))
    return directory


def default_card(cfg: Config, meta: dict) -> str:
    m = cfg.model
    return (f"# DiffusionTalker checkpoint\n\n- output: {m.kind} ({m.motion_dim} channels at {m.fps} fps)\n"
            f"- audio encoder: {m.encoder}\n- identities: {', '.join(m.identity_names)}\n"
            f"- sampling steps: {cfg.diffusion.steps}\n- training data: {meta.get('data', 'not recorded')}\n"
            f"- licence: {meta.get('licence', 'not recorded')}\n")


def read_config(directory: str | os.PathLike) -> tuple[Config, dict]:
    """Parse and validate ``config.json``; returns (Config, meta)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    path = directory / "config.json"
    if not path.exists():
        raise CheckpointError(f"{directory} has no config.json; is it a DiffusionTalker checkpoint directory?")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a DiffusionTalker config (missing \"format\": \"{FORMAT}\")")
    unknown = set(doc) - {"format", "version", "config", "meta"}
    if unknown:
        raise CheckpointError(f"{path} has unknown key(s) {sorted(unknown)}")
    if doc.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer DiffusionTalker (format {doc['version']}); upgrade")
    try:
        cfg = Config.from_dict(doc.get("config", {}))
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return cfg, doc.get("meta", {})


def load_checkpoint(directory: str | os.PathLike, device: str | torch.device = "cpu"
                    ) -> tuple[TalkerModel, Config, dict]:
    """Rebuild the model of a checkpoint directory and load its weights, validating everything.

    Raises CheckpointError naming the problem: missing files, a pickle instead of safetensors (refused, never
    unpickled), unknown config keys, missing/unexpected tensors, wrong shapes or non-finite weights.
    """
    directory = Path(directory)
    weights = directory / "model.safetensors"
    if directory.is_dir() and not weights.exists():
        pickles = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise CheckpointError(
                f"{directory} holds {pickles} but no model.safetensors; pickled weights are refused because "
                f"loading them can run arbitrary code. Convert them to safetensors with a trusted script")
    cfg, meta = read_config(directory)
    if not weights.exists():
        raise CheckpointError(f"{directory} has no model.safetensors (the weights); the checkpoint is incomplete")
    try:
        state = load_file(str(weights))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{weights} could not be read as safetensors: {e}") from None
    model = TalkerModel(cfg.model)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{weights} does not match its config: missing tensors {missing[:5]}"
                              f"{'...' if len(missing) > 5 else ''}, unexpected tensors {unexpected[:5]}")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(f"{weights}: tensor {name!r} has shape {tuple(tensor.shape)}, the config needs "
                                  f"{tuple(expected[name].shape)}")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{weights}: tensor {name!r} holds NaN or infinite values; the checkpoint is "
                                  f"corrupt (retrain or re-export it)")
        state[name] = tensor.to(expected[name].dtype)
    model.load_state_dict(state)
    model.to(device).eval()
    return model, cfg, meta


def write_ladder(directory: str | os.PathLike, rungs: dict[int, str], teacher_steps: int | None = None) -> Path:
    """Write ``ladder.json``: {"rungs": {"512": "teacher", "8": "student-8", ...}, "teacher": 512}."""
    directory = Path(directory)
    doc = {"format": "diffusiontalker-ladder", "rungs": {str(k): v for k, v in sorted(rungs.items(), reverse=True)},
           "teacher": teacher_steps if teacher_steps is not None else max(rungs)}
    _atomic_write_text(directory / "ladder.json", json.dumps(doc, indent=2) + "\n")
    return directory / "ladder.json"


def read_ladder(directory: str | os.PathLike) -> dict[int, Path]:
    """Steps -> checkpoint directory of a ladder dir; a plain checkpoint dir is a one-rung ladder."""
    directory = Path(directory)
    manifest = directory / "ladder.json"
    if manifest.exists():
        try:
            doc = json.loads(manifest.read_text(encoding="utf-8"))
            rungs = {int(k): directory / v for k, v in doc["rungs"].items()}
        except (json.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{manifest} is malformed ({e}); expected {{\"rungs\": {{\"8\": \"student-8\"}}}}"
                                  ) from None
        for steps, path in rungs.items():
            if not path.resolve().is_relative_to(directory.resolve()):
                raise CheckpointError(f"{manifest}: rung {steps} points outside the ladder directory")
        if not rungs:
            raise CheckpointError(f"{manifest} lists no rungs")
        return rungs
    cfg, _ = read_config(directory)
    return {cfg.diffusion.steps: directory}
