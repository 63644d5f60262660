"""Audio encoders: shapes and masks, padding and gain invariance, tiny HuBERT / wav2vec2 backbones from local dirs."""

from __future__ import annotations

import pytest
import torch
from conftest import speechlike

from diffusiontalker.audio import FPS, SAMPLE_RATE
from diffusiontalker.config import override, preset
from diffusiontalker.encoders import MelEncoder, build_encoder, frame_mask, resample_frames
from diffusiontalker.errors import CheckpointError


def mel_encoder(layers: int = 3, seed: int = 0) -> MelEncoder:
    """The mel encoder with a GroupNorm'd conv stack (as in the ``cpu`` preset), random weights."""
    torch.manual_seed(seed)
    return MelEncoder(override(preset("tiny"), model__encoder_layers=layers).model).eval()


def clip(seconds: float, **kw) -> torch.Tensor:
    return torch.from_numpy(speechlike(seconds, **kw))


def test_frame_mask():
    m = frame_mask(torch.tensor([2, 4, 0]), 4)
    assert m.tolist() == [[True, True, False, False], [True] * 4, [False] * 4]


def test_resample_frames_is_linear_interpolation():
    feats = torch.arange(50.0).view(1, 50, 1)  # value = frame index at 50 fps
    out = resample_frames(feats, 30, src_fps=50.0)  # (1, 30, 1)
    expected = torch.arange(30.0) * 50 / 30  # frame t at 30 fps sits at 50/30 t frames of the source
    torch.testing.assert_close(out[0, :, 0], expected)


@torch.no_grad()
def test_mel_shapes_and_mask_for_padded_batch():
    enc = mel_encoder()
    a, b = clip(1.0, seed=1), clip(1.6, f0=200.0, seed=2)
    batch = torch.zeros(2, len(b))
    batch[0, : len(a)], batch[1] = a, b
    feats, mask = enc(batch, torch.tensor([len(a), len(b)]))
    assert feats.shape == (2, 48, enc.out_dim) and mask.shape == (2, 48)  # 1.6 s at 30 fps
    assert mask.sum(1).tolist() == [30, 48]
    assert torch.all(feats[0, 30:] == 0)  # padded frames are zeroed
    assert feats[0, :30].abs().mean() > 0.05


@pytest.mark.parametrize("layers", [1, 3])
@torch.no_grad()
def test_padding_does_not_change_a_clips_features(layers):
    enc = mel_encoder(layers)
    a, b = clip(1.0, seed=1), clip(1.6, f0=200.0, seed=2)
    alone, _ = enc(a[None])  # (1, 30, C)
    batch = torch.zeros(2, len(b))
    batch[0, : len(a)], batch[1] = a, b
    padded, _ = enc(batch, torch.tensor([len(a), len(b)]))
    T = alone.shape[1]
    scale = alone.abs().mean()
    # away from the clip's end the features are the same; the last frames see the STFT's edge padding
    # (reflection alone vs zeros in the batch), so they only get a loose bound
    inner = (padded[0, : T - 5] - alone[0, : T - 5]).abs().max()
    edge = (padded[0, T - 5: T] - alone[0, T - 5:]).abs().max()
    assert inner < 0.01 * scale, (inner, scale)
    assert edge < 0.5 * scale, (edge, scale)
    # and the longer clip is unaffected by sharing a batch
    b_alone, _ = enc(b[None])
    torch.testing.assert_close(padded[1], b_alone[0], atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_gain_invariance():
    enc = mel_encoder()
    x = clip(1.5)
    loud, _ = enc(x[None])
    quiet, _ = enc(0.1 * x[None])  # 20 dB quieter
    assert (loud - quiet).abs().max() < 1e-3 * loud.abs().max()


@torch.no_grad()
def test_digital_silence_is_finite():
    enc = mel_encoder()
    feats, mask = enc(torch.zeros(1, SAMPLE_RATE))
    assert torch.isfinite(feats).all() and mask.all()


def test_mel_encoder_is_trainable():
    enc = mel_encoder()
    feats, _ = enc(clip(0.5)[None])
    feats.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


# --- transformers backbones -------------------------------------------------------------------------------------

TINY_BACKBONE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                     conv_dim=(32, 32), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
                     num_conv_pos_embedding_groups=2, hidden_dropout=0.0, attention_dropout=0.0,
                     activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0)


def save_tiny_backbone(kind: str, directory) -> str:
    from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    if kind == "hubert":
        HubertModel(HubertConfig(**TINY_BACKBONE)).save_pretrained(directory)
    else:
        Wav2Vec2Model(Wav2Vec2Config(**TINY_BACKBONE)).save_pretrained(directory)
    return str(directory)


@pytest.mark.parametrize("kind", ["hubert", "wav2vec2"])
def test_transformers_encoder_from_local_dir(tmp_path, kind):
    path = save_tiny_backbone(kind, tmp_path / kind)
    cfg = override(preset("tiny"), model__encoder=kind, model__encoder_path=path).model
    enc = build_encoder(cfg)
    # the CNN feature extractor is frozen (FaceDiffuser), the transformer layers train
    assert not any(p.requires_grad for p in enc.backbone.feature_extractor.parameters())
    assert all(p.requires_grad for p in enc.backbone.encoder.parameters())
    assert all(p.requires_grad for p in enc.proj.parameters())

    enc.eval()
    a, b = clip(1.0, seed=1), clip(0.7, seed=2)
    batch = torch.zeros(2, len(a))
    batch[0], batch[1, : len(b)] = a, b
    feats, mask = enc(batch, torch.tensor([len(a), len(b)]))
    assert feats.shape == (2, 30, cfg.audio_dim)
    assert mask.sum(1).tolist() == [30, 21]
    assert torch.isfinite(feats).all() and torch.all(feats[1, 21:] == 0)

    # features are aligned to motion frames: the backbone's frame rate is what its strides say (here 16000/10)
    hidden, rate = enc.features(a[None], torch.tensor([len(a)]))
    assert rate == SAMPLE_RATE / 10
    assert abs(hidden.shape[1] / rate - len(a) / SAMPLE_RATE) < 0.01  # seconds covered == the clip's length

    feats[0].sum().backward()
    assert enc.proj.weight.grad is not None
    assert all(p.grad is None for p in enc.backbone.feature_extractor.parameters())


def test_freeze_all(tmp_path):
    path = save_tiny_backbone("hubert", tmp_path / "h")
    enc = build_encoder(override(preset("tiny"), model__encoder="hubert", model__encoder_path=path,
                                 model__freeze_encoder="all").model)
    assert not any(p.requires_grad for p in enc.backbone.parameters())
    assert all(p.requires_grad for p in enc.proj.parameters())


def test_freeze_none(tmp_path):
    path = save_tiny_backbone("hubert", tmp_path / "h")
    enc = build_encoder(override(preset("tiny"), model__encoder="hubert", model__encoder_path=path,
                                 model__freeze_encoder="none").model)
    assert all(p.requires_grad for p in enc.backbone.parameters())


def test_backbone_from_stored_config_needs_no_files(tmp_path):
    path = save_tiny_backbone("hubert", tmp_path / "h")
    from transformers import HubertConfig

    stored = HubertConfig.from_pretrained(path).to_dict()
    cfg = override(preset("tiny"), model__encoder="hubert", model__encoder_path="not/reachable",
                   model__encoder_config=stored).model
    enc = build_encoder(cfg).eval()
    with torch.no_grad():
        feats, _ = enc(clip(0.5)[None])
    assert feats.shape == (1, 15, cfg.audio_dim)


@pytest.mark.parametrize("source", ["facebook/this-model-does-not-exist-dt", "/no/such/local/dir"])
def test_unreachable_backbone_asks_for_a_local_path(source):
    cfg = override(preset("tiny"), model__encoder="hubert", model__encoder_path=source).model
    with pytest.raises(CheckpointError, match=r"could not load the hubert encoder.*pass a local directory"):
        build_encoder(cfg)


def test_fps_constant():
    assert FPS == 30 and SAMPLE_RATE == 16_000
