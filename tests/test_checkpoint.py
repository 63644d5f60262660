"""Checkpoint directories: exact round trips, float16 storage, ladders, and a CheckpointError for every defect."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import IDENTITIES, make_checkpoint, speechlike
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from diffusiontalker.arkit import ARKIT_52
from diffusiontalker.checkpoint import load_checkpoint, read_config, read_ladder, save_checkpoint, write_ladder
from diffusiontalker.config import override, preset
from diffusiontalker.diffusion import sample
from diffusiontalker.errors import CheckpointError
from diffusiontalker.model import TalkerModel
from diffusiontalker.pipeline import Pipeline
from diffusiontalker.schedule import NoiseSchedule


def generate(model: TalkerModel, steps: int = 8, seed: int = 0) -> torch.Tensor:
    """Encode a fixed clip and sample with a fixed seed: everything a checkpoint must reproduce."""
    wav = torch.from_numpy(speechlike(1.0, seed=1))[None]
    with torch.no_grad():
        feats, mask = model.encode(wav)
        probs = model.identity.match(feats, mask)
        identity = model.identity.embed(probs.argmax(-1))
        noise = torch.randn(1, feats.shape[1], model.cfg.motion_dim, generator=torch.Generator().manual_seed(seed))
        x = sample(model, NoiseSchedule(), feats, mask, identity, steps, noise)
        return torch.cat([model.denormalise(x).flatten(), probs.flatten()])


def random_model(kind: str = "blendshape") -> tuple[TalkerModel, object]:
    torch.manual_seed(0)
    extra = {"model__kind": "vertex", "model__motion_dim": 12, "model__channel_names": None} if kind == "vertex" \
        else {}
    cfg = override(preset("tiny"), model__identity_names=IDENTITIES, diffusion__steps=8, **extra)
    model = TalkerModel(cfg.model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(0.05 * torch.randn_like(p)) if ("modulation" in name or "output" in name) else None
        model.set_normalisation(torch.rand(cfg.model.motion_dim), 0.1 + torch.rand(cfg.model.motion_dim))
        if kind == "vertex":
            model.template.copy_(torch.randn(4, 3))
    return model.eval(), cfg


@pytest.mark.parametrize("kind", ["blendshape", "vertex"])
def test_save_load_is_bit_identical(tmp_path, kind):
    model, cfg = random_model(kind)
    before = generate(model)
    directory = save_checkpoint(model, cfg, tmp_path / "ckpt", meta={"data": "unit test"})
    assert sorted(p.name for p in directory.iterdir()) == ["MODEL_CARD.md", "config.json", "model.safetensors"]
    loaded, cfg2, meta = load_checkpoint(directory)
    assert cfg2 == cfg and meta == {"data": "unit test"}
    assert not loaded.training
    assert torch.equal(generate(loaded), before)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k


def test_config_json_describes_the_model(tmp_path):
    model, cfg = random_model()
    directory = save_checkpoint(model, cfg, tmp_path / "ckpt")
    doc = json.loads((directory / "config.json").read_text())
    assert doc["format"] == "diffusiontalker-checkpoint"
    m = doc["config"]["model"]
    assert m["encoder"] == "mel" and m["kind"] == "blendshape" and m["fps"] == 30
    assert m["identity_names"] == IDENTITIES and m["channel_names"] == list(ARKIT_52)
    assert doc["config"]["diffusion"]["steps"] == 8
    card = (directory / "MODEL_CARD.md").read_text()
    assert "mel" in card and "ava, ben, cy" in card and "sampling steps: 8" in card
    assert not list(directory.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_custom_card_is_kept(tmp_path):
    model, cfg = random_model()
    d = save_checkpoint(model, cfg, tmp_path / "c", card="# my card\n")
    save_checkpoint(model, cfg, d)  # re-saving without a card keeps the existing one
    assert (d / "MODEL_CARD.md").read_text() == "# my card\n"


def test_half_precision(tmp_path):
    model, cfg = random_model()
    before = generate(model)
    directory = save_checkpoint(model, cfg, tmp_path / "half", half=True)
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        assert f.get_tensor("denoiser.output.weight").dtype == torch.float16
    full = tmp_path / "full"
    save_checkpoint(model, cfg, full)
    assert (directory / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    loaded, _, _ = load_checkpoint(directory)
    assert loaded.denoiser.output.weight.dtype == torch.float32
    after = generate(loaded)
    assert not torch.equal(after, before)  # float16 rounding did happen ...
    torch.testing.assert_close(after, before, atol=0.05, rtol=0.05)  # ... and changes little


def test_pipeline_outputs_survive_a_resave(tmp_path, tiny_checkpoint):
    wav = speechlike(1.0, seed=2)
    first = Pipeline.from_pretrained(tiny_checkpoint)
    a = first(wav, sr=16_000, seed=3, num_samples=2)
    model, cfg, meta = load_checkpoint(tiny_checkpoint)
    save_checkpoint(model, cfg, tmp_path / "copy", meta=meta)
    b = Pipeline.from_pretrained(tmp_path / "copy")(wav, sr=16_000, seed=3, num_samples=2)
    for x, y in zip(a, b):
        assert np.array_equal(x.values, y.values)
        assert x.identity_scores == y.identity_scores


# --- errors -----------------------------------------------------------------------------------------------------

@pytest.fixture
def ckpt(tmp_path, tiny_checkpoint) -> Path:
    """A private copy of the tiny checkpoint to damage."""
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint directory not found: .*nowhere"):
        load_checkpoint(tmp_path / "nowhere")


def test_missing_config(ckpt):
    (ckpt / "config.json").unlink()
    with pytest.raises(CheckpointError, match="has no config.json; is it a DiffusionTalker checkpoint directory"):
        load_checkpoint(ckpt)


def test_missing_weights(ckpt):
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"has no model.safetensors \(the weights\)"):
        load_checkpoint(ckpt)


class _Payload:
    """Unpickling this creates ``marker``: proof that a pickle was (or was not) executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_is_refused_and_never_unpickled(ckpt, tmp_path):
    # the payload really does run code when unpickled ...
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe))).close()
    assert probe.exists()
    # ... but load_checkpoint refuses it without unpickling
    marker = tmp_path / "pwned"
    (ckpt / "model.safetensors").unlink()
    (ckpt / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match=r"\['pytorch_model.bin'\] but no model.safetensors; pickled weights "
                                              r"are refused"):
        load_checkpoint(ckpt)
    with pytest.raises(CheckpointError):
        Pipeline.from_pretrained(ckpt).model()
    assert not marker.exists()


def test_pickle_without_config_is_refused(tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    marker = tmp_path / "pwned"
    (d / "model.pt").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="pickled weights are refused"):
        load_checkpoint(d)
    assert not marker.exists()


def _edit_config(ckpt: Path, edit) -> None:
    path = ckpt / "config.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def test_unknown_config_key(ckpt):
    _edit_config(ckpt, lambda d: d["config"]["model"].update(wings=2))
    with pytest.raises(CheckpointError, match=r"config.json: unknown key\(s\) \['wings'\] in config section 'model'"):
        load_checkpoint(ckpt)


def test_unknown_top_level_key(ckpt):
    _edit_config(ckpt, lambda d: d.update(extra=1))
    with pytest.raises(CheckpointError, match=r"unknown key\(s\) \['extra'\]"):
        read_config(ckpt)


def test_invalid_config_value(ckpt):
    _edit_config(ckpt, lambda d: d["config"]["model"].update(encoder="mfcc"))
    with pytest.raises(CheckpointError, match="encoder='mfcc' is not valid; choose one of"):
        load_checkpoint(ckpt)


def test_config_not_json(ckpt):
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        load_checkpoint(ckpt)


def test_config_of_another_format(ckpt):
    (ckpt / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(CheckpointError, match="is not a DiffusionTalker config"):
        load_checkpoint(ckpt)


def test_newer_format_version(ckpt):
    _edit_config(ckpt, lambda d: d.update(version=99))
    with pytest.raises(CheckpointError, match="newer DiffusionTalker"):
        load_checkpoint(ckpt)


def _edit_weights(ckpt: Path, edit) -> None:
    path = ckpt / "model.safetensors"
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path))


def test_wrong_tensor_shape(ckpt):
    _edit_weights(ckpt, lambda s: s.update({"denoiser.output.weight": torch.zeros(52, 7)}))
    with pytest.raises(CheckpointError, match=r"tensor 'denoiser.output.weight' has shape \(52, 7\), the config "
                                              r"needs \(52, 32\)"):
        load_checkpoint(ckpt)


def test_config_that_does_not_match_the_weights(ckpt):
    _edit_config(ckpt, lambda d: d["config"]["model"].update(d_model=64))
    with pytest.raises(CheckpointError, match="has shape .* the config needs"):
        load_checkpoint(ckpt)


def test_missing_and_unexpected_tensors(ckpt):
    def edit(state):
        state["surprise"] = torch.zeros(2)
        del state["identity.embeddings"]

    _edit_weights(ckpt, edit)
    with pytest.raises(CheckpointError, match=r"missing tensors \['identity.embeddings'\].*unexpected tensors "
                                              r"\['surprise'\]"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights(ckpt, bad):
    def edit(state):
        state["denoiser.input.weight"][0, 0] = bad

    _edit_weights(ckpt, edit)
    with pytest.raises(CheckpointError, match="tensor 'denoiser.input.weight' holds NaN or infinite values"):
        load_checkpoint(ckpt)


def test_corrupt_safetensors(ckpt):
    (ckpt / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="could not be read as safetensors"):
        load_checkpoint(ckpt)


# --- ladders ----------------------------------------------------------------------------------------------------

def test_plain_checkpoint_is_a_one_rung_ladder(tiny_checkpoint):
    assert read_ladder(tiny_checkpoint) == {8: tiny_checkpoint}


def test_ladder_round_trip(tiny_ladder):
    rungs = read_ladder(tiny_ladder)
    assert sorted(rungs) == [1, 2, 4, 8]
    assert rungs[8] == tiny_ladder / "teacher" and rungs[1] == tiny_ladder / "student-1"
    for steps, path in rungs.items():
        assert read_config(path)[0].diffusion.steps == steps
    doc = json.loads((tiny_ladder / "ladder.json").read_text())
    assert doc["teacher"] == 8 and list(doc["rungs"]) == ["8", "4", "2", "1"]


@pytest.mark.parametrize(("text", "pattern"), [
    ("{broken", r"ladder.json is malformed"),
    ('{"steps": {}}', r"ladder.json is malformed"),
    ('{"rungs": {"eight": "teacher"}}', r"ladder.json is malformed"),
    ('{"rungs": []}', r"ladder.json is malformed"),
    ('{"rungs": {}}', r"lists no rungs"),
    ('{"rungs": {"8": "../../elsewhere"}}', r"points outside the ladder directory"),
])
def test_malformed_ladder(tmp_path, text, pattern):
    d = tmp_path / "ladder"
    make_checkpoint(d / "teacher")
    (d / "ladder.json").write_text(text)
    with pytest.raises(CheckpointError, match=pattern):
        read_ladder(d)


def test_write_ladder(tmp_path):
    path = write_ladder(tmp_path, {1: "student-1", 512: "teacher", 8: "student-8"})
    doc = json.loads(path.read_text())
    assert list(doc["rungs"]) == ["512", "8", "1"] and doc["teacher"] == 512


def test_hubert_checkpoint_rebuilds_offline(tmp_path):
    """A transformers-encoder checkpoint stores the backbone's config: it loads after the backbone dir is gone."""
    from test_encoders import save_tiny_backbone

    backbone = save_tiny_backbone("hubert", tmp_path / "hubert")
    torch.manual_seed(0)
    cfg = override(preset("tiny"), model__encoder="hubert", model__encoder_path=backbone, diffusion__steps=8)
    model = TalkerModel(cfg.model).eval()
    with torch.no_grad():
        model.denoiser.output.weight.normal_(0, 0.05)
    before = generate(model)
    directory = save_checkpoint(model, cfg, tmp_path / "ckpt")
    shutil.rmtree(backbone)
    loaded, cfg2, _ = load_checkpoint(directory)
    assert cfg2.model.encoder_config["hidden_size"] == 32
    assert torch.equal(generate(loaded), before)
