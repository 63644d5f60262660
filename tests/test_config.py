"""Config dataclasses and presets: they build, validate on creation, round-trip through dicts/JSON, reject unknowns."""

from __future__ import annotations

import json

import pytest

from diffusiontalker.config import (
    Config,
    DiffusionConfig,
    DistillConfig,
    ModelConfig,
    TrainConfig,
    override,
    preset,
    replace,
)
from diffusiontalker.errors import ConfigError, DiffusionTalkerError


@pytest.mark.parametrize("name", ["tiny", "cpu", "paper"])
def test_presets_build_and_round_trip(name):
    cfg = preset(name)
    assert isinstance(cfg, Config)
    data = cfg.to_dict()
    assert set(data) == {"model", "diffusion", "train", "distill"}
    again = Config.from_dict(json.loads(json.dumps(data)))  # through JSON, as a checkpoint stores it
    assert again == cfg
    assert again.to_dict() == data


def test_presets_differ_in_size():
    tiny, cpu, paper = (preset(n).model for n in ("tiny", "cpu", "paper"))
    assert tiny.d_model < cpu.d_model < paper.d_model
    assert tiny.encoder == cpu.encoder == "mel"
    assert paper.encoder == "hubert" and paper.encoder_path


def test_unknown_preset_lists_choices():
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'.*'tiny', 'cpu', 'paper'"):
        preset("huge")


def test_config_error_is_a_diffusiontalker_error():
    assert issubclass(ConfigError, DiffusionTalkerError)


@pytest.mark.parametrize(("field", "value", "pattern"), [
    ("encoder", "whisper", r"encoder='whisper' is not valid; choose one of \['mel', 'hubert', 'wav2vec2'\]"),
    ("kind", "mesh", r"kind='mesh' is not valid; choose one of \['blendshape', 'vertex'\]"),
    ("freeze_encoder", "some", r"freeze_encoder='some' is not valid; choose one of \['none', 'cnn', 'all'\]"),
])
def test_bad_choice_lists_valid_choices(field, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        ModelConfig(**{field: value})


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"d_model": 0}, "d_model must be positive"),
    ({"n_heads": -1}, "n_heads must be positive"),
    ({"d_model": 30, "n_heads": 4}, "divisible by n_heads"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"encoder": "hubert"}, "needs encoder_path"),
    ({"channel_names": ["jawOpen"]}, "need 52 channel_names"),
    ({"kind": "vertex", "motion_dim": 31, "channel_names": None}, "3 x vertices"),
    ({"identity_names": []}, "non-empty list of unique names"),
    ({"identity_names": ["ava", "ava"]}, "unique names"),
    ({"emotion_head": True, "emotion_names": ["happy", "happy"]}, "emotion_names must be unique"),
    ({"emotion_names": ["happy", "sad"]}, "emotion_head is False"),
])
def test_model_config_validation(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        ModelConfig(**kwargs)


def test_vertex_and_transformers_configs_are_valid():
    v = ModelConfig(kind="vertex", motion_dim=3 * 100, channel_names=None)
    assert v.motion_dim == 300
    h = ModelConfig(encoder="wav2vec2", encoder_path="/some/local/dir")
    assert h.encoder_path == "/some/local/dir"


@pytest.mark.parametrize(("klass", "kwargs", "pattern"), [
    (DiffusionConfig, {"steps": 3}, r"steps=3 must be a power of two"),
    (DiffusionConfig, {"steps": 2048}, r"must be a power of two that divides num_train_timesteps=1024"),
    (DiffusionConfig, {"steps": 0}, "steps must be positive"),
    (DiffusionConfig, {"velocity_weight": -1.0}, "loss weights must be >= 0"),
    (DiffusionConfig, {"identity_dropout": 1.0}, r"identity_dropout in \[0, 1\)"),
    (DiffusionConfig, {"emotion_weight": -0.1}, "emotion_weight must be >= 0"),
    (DiffusionConfig, {"emotion_label_prob": 1.5}, r"emotion_label_prob in \[0, 1\]"),
    (TrainConfig, {"window_min": 5.0, "window_max": 2.0}, "window_min must not exceed window_max"),
    (TrainConfig, {"ema_decay": 1.0}, "ema_decay"),
    (TrainConfig, {"lr": 0.0}, "lr must be positive"),
    (DistillConfig, {"start_steps": 12}, "start_steps must be a power of two"),
    (DistillConfig, {"start_steps": 8, "target_steps": 8}, "target_steps must be smaller"),
])
def test_section_validation(klass, kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        klass(**kwargs)


def test_override_returns_validated_copy():
    base = preset("tiny")
    new = override(base, train__iterations=7, model__identity_names=["a", "b"], diffusion__steps=4)
    assert (new.train.iterations, new.model.identity_names, new.diffusion.steps) == (7, ["a", "b"], 4)
    assert base.train.iterations == 50 and base.model.identity_names == ["default"]  # the original is untouched
    assert preset("tiny", train__iterations=7) == override(base, train__iterations=7)


@pytest.mark.parametrize("key", ["train__nope", "nosection__iterations", "iterations"])
def test_override_unknown_key(key):
    with pytest.raises(ConfigError, match="unknown override"):
        override(preset("tiny"), **{key: 1})


def test_override_revalidates():
    with pytest.raises(ConfigError, match="power of two"):
        override(preset("tiny"), diffusion__steps=6)
    with pytest.raises(ConfigError, match="choose one of"):
        override(preset("tiny"), model__encoder="mfcc")


def test_from_dict_rejects_unknown_keys_and_sections():
    data = preset("tiny").to_dict()
    data["model"]["colour"] = "blue"
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['colour'\] in config section 'model'"):
        Config.from_dict(data)
    data = preset("tiny").to_dict() | {"optimizer": {}}
    with pytest.raises(ConfigError, match=r"unknown config section\(s\) \['optimizer'\]"):
        Config.from_dict(data)


def test_from_dict_bad_types():
    with pytest.raises(ConfigError, match="must be a JSON object"):
        Config.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="section 'train' must be an object"):
        Config.from_dict({"train": 3})


def test_from_dict_fills_defaults_for_missing_sections():
    cfg = Config.from_dict({"diffusion": {"steps": 8}})
    assert cfg.diffusion.steps == 8 and cfg.model == ModelConfig()


def test_replace_revalidates():
    m = preset("tiny").model
    assert replace(m, d_model=64).d_model == 64
    with pytest.raises(ConfigError):
        replace(m, d_model=33)


def test_an_emotion_head_needs_two_labelled_emotions():
    """The head exists only when asked for AND the data had at least two emotion labels to tell apart."""
    assert not ModelConfig().has_emotion
    assert not ModelConfig(emotion_head=True).has_emotion  # data without labels
    assert not ModelConfig(emotion_head=True, emotion_names=["neutral"]).has_emotion
    assert ModelConfig(emotion_head=True, emotion_names=["neutral", "happy"]).has_emotion
