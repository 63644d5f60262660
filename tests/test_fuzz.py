"""Fuzzing (hypothesis): ``load_audio`` on random bytes and random arrays, and every exporter on random animations.

Contract: ``load_audio`` returns finite float32 mono at 16 kHz in [-1, 1], or raises ``AudioError``, never another
exception. Exporters write what they are given and it reads back faithfully: blendshape formats clipped to [0, 1],
vertex formats as is, even at ±1e6; NaN/Inf animations are refused with ``ExportError`` and leave no file.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import event, given, settings
from hypothesis import strategies as st

from diffusiontalker.animation import Animation
from diffusiontalker.arkit import ARKIT_52
from diffusiontalker.audio import SAMPLE_RATE, load_audio
from diffusiontalker.errors import AudioError, ExportError
from diffusiontalker.export import export_animation, load_animation

FUZZ = settings(max_examples=30, deadline=None, derandomize=True)  # reproducible in CI, bounded time


def _wav_bytes(seconds: float = 0.3, sr: int = 8000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * sr)) / sr
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, format="WAV", subtype=subtype)
    return buf.getvalue()


WAV = _wav_bytes()


def _check_audio(out: np.ndarray) -> None:
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.ndim == 1
    assert out.size >= 0.2 * SAMPLE_RATE - 2  # at least the 0.2 s minimum, at 16 kHz
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.0


# --- load_audio on random files -------------------------------------------------------------------------------
random_files = st.one_of(
    st.binary(max_size=2048),  # noise
    st.integers(0, len(WAV)).map(lambda n: WAV[:n]),  # a wav cut anywhere (header or data)
    st.tuples(st.integers(0, len(WAV)), st.binary(min_size=1, max_size=512)).map(  # a wav with bytes overwritten
        lambda a: WAV[:a[0]] + a[1] + WAV[a[0] + len(a[1]):]),
    st.binary(max_size=256).map(lambda b: b"RIFF" + b),  # a RIFF header start, then noise
    st.binary(max_size=256).map(lambda b: b"ID3\x03\x00\x00\x00" + b),  # an mp3 tag, then noise
)


@FUZZ
@given(data=random_files, suffix=st.sampled_from([".wav", ".mp3", ".bin"]))
def test_load_audio_on_random_bytes_returns_audio_or_audio_error(data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            out = load_audio(path)
        except AudioError as e:
            assert str(e)  # a message, not an empty error
            event(f"refused: {str(e).split(';')[0].replace(path.name, 'FILE')[:40]}")
            return
        event("decoded")
        _check_audio(out)


# --- load_audio on random arrays ------------------------------------------------------------------------------
DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16]


@st.composite
def random_arrays(draw) -> tuple[np.ndarray, int]:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    layout = draw(st.sampled_from(["mono", "mono", "frames_channels", "frames_channels", "channels_frames", "3d",
                                   "empty"]))
    n = draw(st.one_of(st.sampled_from([4000, 9600, 48_000]), st.integers(0, 12_000)))
    c = draw(st.one_of(st.sampled_from([1, 2, 8]), st.integers(0, 12)))
    shape = {"mono": (n,), "frames_channels": (n, c), "channels_frames": (c, n), "3d": (2, 3, n // 100),
             "empty": (0,) * draw(st.integers(1, 3))}[layout]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1e-6, 0.5, 1.0, 3.0, 1e6, 3e38]))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    else:
        with np.errstate(over="ignore"):  # float16 overflows to inf on purpose
            x = (rng.uniform(-1, 1, size=shape) * scale).astype(dtype)
        special = draw(st.sampled_from([None, np.nan, np.inf, -np.inf]))
        if special is not None and x.size:
            x.flat[draw(st.integers(0, x.size - 1))] = special
    sr = draw(st.one_of(st.sampled_from([8000, 16000, 44100, 192_000]), st.integers(-5, 400_000)))
    return x, sr


@FUZZ
@given(case=random_arrays())
def test_load_audio_on_random_arrays_returns_audio_or_audio_error(case):
    x, sr = case
    try:
        out = load_audio(x, sr=sr)
    except AudioError as e:
        assert str(e)
        event(f"refused: {str(e).split(';')[0][:40]}")
        return
    event("loaded")
    _check_audio(out)
    frames = x.shape[0] if x.ndim == 1 or not (x.shape[0] < x.shape[1] and x.shape[0] <= 16) else x.shape[1]
    assert abs(out.size - frames * SAMPLE_RATE / sr) <= 2  # resampled to 16 kHz


def test_load_audio_refuses_non_numeric_arrays():
    for bad in (np.array(["a", "b"] * 4000), np.zeros(8000, dtype=bool), np.zeros(8000, dtype=np.complex64)):
        with pytest.raises(AudioError, match="integer or float samples"):
            load_audio(bad, sr=16000)


def test_multichannel_near_float_max_mixes_down_without_overflow():
    x = np.full((16000, 2), 3e38, np.float32)
    x[::2] *= -1
    out = load_audio(x, sr=16000)
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.0


def test_zero_channels_is_an_audio_error():
    with pytest.raises(AudioError, match="no samples"):
        load_audio(np.zeros((8000, 0), np.float32), sr=16000)


# --- exporters ------------------------------------------------------------------------------------------------
def _values(draw, shape: tuple[int, ...], extremes: bool) -> np.ndarray:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    v = rng.uniform(-0.5, 1.5, shape)
    if extremes:
        mask = rng.random(shape) < 0.3
        v[mask] = rng.choice([-1e6, 1e6, 0.0, 1.0], size=int(mask.sum()))
    return v.astype(np.float32)


@st.composite
def blendshape_anims(draw) -> Animation:
    T = draw(st.integers(1, 6))
    names = list(ARKIT_52)
    if draw(st.booleans()):  # channels in another order: exporters must go by name
        names = [names[i] for i in np.random.default_rng(T).permutation(52)]
    fps = draw(st.sampled_from([24.0, 25.0, 30.0, 60.0]))
    return Animation(_values(draw, (T, 52), draw(st.booleans())), fps=fps, names=tuple(names), seed=1)


@st.composite
def vertex_anims(draw) -> Animation:
    T, V = draw(st.integers(1, 6)), draw(st.integers(3, 12))
    rng = np.random.default_rng(V)
    faces = np.stack([rng.permutation(V)[:3] for _ in range(V)]).astype(np.int32)  # (F, 3) valid triangles
    extremes = draw(st.booleans())
    return Animation(_values(draw, (T, V, 3), extremes), kind="vertex", template=_values(draw, (V, 3), extremes),
                     faces=faces)


def _arkit(anim: Animation) -> np.ndarray:
    """(T, 52) expected read-back: Apple order, clipped."""
    order = [anim.names.index(n) for n in ARKIT_52]
    return np.clip(anim.values[:, order], 0.0, 1.0)


def _glb_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    """(times, weights flat, targets, base) read back from a GLB."""
    import pygltflib

    g = pygltflib.GLTF2().load(str(path))
    blob = g.binary_blob()

    def read(i: int, width: int) -> np.ndarray:
        acc = g.accessors[i]
        view = g.bufferViews[acc.bufferView]
        return np.frombuffer(blob, np.float32, count=acc.count * width, offset=view.byteOffset).reshape(acc.count,
                                                                                                          -1)

    sampler = g.animations[0].samplers[0]
    prim = g.meshes[0].primitives[0]
    targets = [read(t["POSITION"] if isinstance(t, dict) else t.POSITION, 3) for t in prim.targets]
    return read(sampler.input, 1)[:, 0], read(sampler.output, 1)[:, 0], targets, read(prim.attributes.POSITION, 3)


def _obj_frames(path: Path) -> list[np.ndarray]:
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".obj"))
        return [np.array([[float(x) for x in line.split()[1:]] for line in z.read(n).decode().splitlines()
                          if line.startswith("v ")], np.float32) for n in names]


@FUZZ
@given(anim=blendshape_anims())
def test_blendshape_exporters_write_clipped_values_faithfully(anim):
    want = _arkit(anim)  # (T, 52)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        back = load_animation(export_animation(anim, tmp / "a.npy"))
        np.testing.assert_array_equal(back.values, np.clip(anim.values, 0, 1))  # npy keeps the channel order
        assert back.names == anim.names and back.fps == anim.fps
        back = load_animation(export_animation(anim, tmp / "a.csv"))
        np.testing.assert_allclose(back.values, want, atol=1e-6)
        assert back.num_frames == 1 or back.fps == anim.fps
        back = load_animation(export_animation(anim, tmp / "a.json", fmt="beat"))
        keep = [i for i, n in enumerate(ARKIT_52) if n != "tongueOut"]  # BEAT has 51 channels, no tongueOut
        np.testing.assert_allclose(back.values[:, keep], want[:, keep], atol=1e-6)
        assert back.fps == anim.fps
        times, weights, targets, _ = _glb_arrays(export_animation(anim, tmp / "a.glb"))
        assert len(targets) == 52
        np.testing.assert_allclose(weights.reshape(-1, 52), want, atol=0)
        np.testing.assert_allclose(times, np.arange(anim.num_frames) / anim.fps, rtol=1e-6)


@settings(max_examples=5, deadline=None, derandomize=True)  # the posed head is large: few examples
@given(anim=blendshape_anims())
def test_blendshape_objzip_poses_the_clipped_curves(anim):
    from diffusiontalker.render.rig import load_head

    with tempfile.TemporaryDirectory() as tmp:
        frames = _obj_frames(export_animation(anim, Path(tmp) / "a.zip"))
    posed = load_head().apply(_arkit(anim))  # (T, V, 3)
    assert len(frames) == anim.num_frames
    np.testing.assert_allclose(np.stack(frames), posed, atol=2e-6)


@FUZZ
@given(anim=vertex_anims())
def test_vertex_exporters_write_values_faithfully(anim):
    scale = max(1.0, float(np.abs(anim.values).max()), float(np.abs(anim.template).max()))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        back = load_animation(export_animation(anim, tmp / "v.npy"))
        np.testing.assert_array_equal(back.values, anim.values)
        np.testing.assert_array_equal(back.template, anim.template)
        np.testing.assert_array_equal(back.faces, anim.faces)
        times, weights, targets, base = _glb_arrays(export_animation(anim, tmp / "v.glb"))
        np.testing.assert_array_equal(base, anim.template)
        assert len(targets) == anim.num_frames  # one morph target per frame (under GLB_MAX_VERTEX_FRAMES)
        np.testing.assert_allclose(base[None] + np.stack(targets), anim.values, atol=1e-6 * scale)
        np.testing.assert_array_equal(weights.reshape(anim.num_frames, -1), np.eye(anim.num_frames))
        frames = _obj_frames(export_animation(anim, tmp / "v.zip"))
        np.testing.assert_allclose(np.stack(frames), anim.values, rtol=1e-6, atol=1e-6)
        for fmt in ("csv", "beat"):  # blendshape-only formats say so
            with pytest.raises(ExportError, match="blendshape curves"):
                export_animation(anim, tmp / f"v.{fmt}", fmt=fmt)


@FUZZ
@given(kind=st.sampled_from(["blendshape", "vertex"]), bad=st.sampled_from([np.nan, np.inf, -np.inf]),
       where=st.integers(0, 10_000), fmt=st.sampled_from(["npy", "csv", "beat", "glb", "objzip"]))
def test_non_finite_animations_are_refused_by_every_exporter(kind, bad, where, fmt):
    if kind == "blendshape":
        anim = Animation(np.full((3, 52), 0.5, np.float32))
    else:
        anim = Animation(np.zeros((3, 4, 3), np.float32), kind="vertex", template=np.zeros((4, 3), np.float32),
                         faces=np.array([[0, 1, 2], [1, 2, 3]], np.int32))
    anim.values.flat[where % anim.values.size] = bad
    with tempfile.TemporaryDirectory() as tmp:
        with pytest.raises(ExportError, match="NaN or infinite"):
            export_animation(anim, Path(tmp) / "x", fmt=fmt)
        assert not list(Path(tmp).iterdir())  # nothing written, not even a temporary file


def test_npy_sidecar_stays_json_for_extreme_metadata(tmp_path):
    anim = Animation(np.full((2, 52), 1e6, np.float32), identity_scores={"ava": 1.0}, timings={"total": 1e9})
    export_animation(anim, tmp_path / "m.npy")
    assert json.loads((tmp_path / "m.json").read_text())["timings"]["total"] == 1e9
    assert np.load(tmp_path / "m.npy").max() == 1.0  # clipped like every blendshape format
