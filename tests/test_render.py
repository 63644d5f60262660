"""Offscreen rendering and video: frames that move where the face moves, browser-playable mp4s, grids, templates."""

from __future__ import annotations

import numpy as np
import pytest

from diffusiontalker.animation import Animation
from diffusiontalker.arkit import ARKIT_52
from diffusiontalker.audio import SAMPLE_RATE
from diffusiontalker.errors import RenderError
from diffusiontalker.render.rig import load_head
from diffusiontalker.render.video import load_mesh, probe, render_animation, render_grid, write_video

renderer_mod = pytest.importorskip("diffusiontalker.render.renderer")


def _ramp(T: int, name: str = "jawOpen") -> np.ndarray:
    w = np.zeros((T, 52), np.float32)
    w[:, ARKIT_52.index(name)] = np.linspace(0.0, 1.0, T)
    return w


@pytest.fixture(scope="module")
def jaw_frames():
    rig = load_head()
    r = renderer_mod.Renderer(rig.faces, rig.colors, size=128, bounds_vertices=rig.neutral)
    try:
        frames = list(r.render_sequence(rig.apply(_ramp(3))))
    finally:
        r.close()
    return frames


def test_jaw_open_ramp_changes_mouth_pixels_of_a_centred_face(jaw_frames):
    f0, f1, f2 = (f.astype(np.int16) for f in jaw_frames)
    assert jaw_frames[0].shape == (128, 128, 3) and jaw_frames[0].dtype == np.uint8
    assert jaw_frames[0].flags["C_CONTIGUOUS"]
    bg = f0[0, 0]
    face = np.abs(f0 - bg).sum(-1) > 30
    ys, xs = np.nonzero(face)
    assert abs(xs.mean() - 64) < 8 and 0.2 < face.mean() < 0.9  # centred and filling the frame
    changed = np.abs(f2 - f0).sum(-1) > 40
    cy, cx = np.nonzero(changed)
    assert changed.sum() > 50
    assert abs(cx.mean() - 64) < 10 and cy.mean() > ys.mean()  # the change is in the lower middle: the mouth
    half = (np.abs(f1 - f0).sum(-1) > 40).sum()
    assert 0 < half < changed.sum() * 1.5  # a half-open jaw changes fewer pixels than the full opening


def test_renderer_rejects_bad_vertices():
    rig = load_head()
    r = renderer_mod.Renderer(rig.faces, rig.colors, size=32)
    with pytest.raises(RenderError):
        r.render(np.zeros((10, 3), np.float32))
    bad = rig.neutral.copy()
    bad[0, 0] = np.nan
    with pytest.raises(RenderError, match="NaN"):
        r.render(bad)
    r.close()


def test_mp4_has_h264_and_aac_of_the_animation_duration(tmp_path):
    T = 30
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    audio = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    anim = Animation(values=_ramp(T), fps=30, audio=audio, model="test", steps=8, seed=0)
    out = render_animation(anim, tmp_path / "a.mp4", size=64, label="jawOpen ramp")
    info = probe(out)
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert (info["width"], info["height"]) == (64, 64)
    assert abs(info["duration"] - 1.0) < 0.1
    assert not list(tmp_path.glob("*.part*")) and not list(tmp_path.glob("dt_video_*"))


def test_write_video_without_audio_and_with_odd_size(tmp_path):
    frames = [np.full((31, 33, 3), i * 20, np.uint8) for i in range(5)]
    info = probe(write_video(frames, tmp_path / "v.mp4", fps=10))
    assert info["video_codec"] == "h264" and info["audio_codec"] is None
    assert (info["width"], info["height"]) == (34, 32)
    with pytest.raises(RenderError, match="no frames"):
        write_video([], tmp_path / "e.mp4", fps=10)


def test_vertex_animation_on_an_obj_template_renders(tmp_path):
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.1)
    path = tmp_path / "template.obj"
    sphere.export(path)
    verts, faces = load_mesh(path)
    assert verts.shape == (len(sphere.vertices), 3) and faces.shape == (len(sphere.faces), 3)
    T = 6
    scale = 1.0 + 0.3 * np.linspace(0, 1, T)[:, None, None]
    anim = Animation(values=verts[None] * scale, fps=30, kind="vertex", template=verts, faces=faces)
    info = probe(render_animation(anim, tmp_path / "v.mp4", size=64))
    assert info["video_codec"] == "h264" and abs(info["duration"] - T / 30) < 0.05


def test_grid_tiles_animations_side_by_side(tmp_path):
    anims = [Animation(values=_ramp(4) * k, fps=30, model=f"m{k}", steps=8, seed=k) for k in (0.3, 0.6, 1.0)]
    info = probe(render_grid(anims, tmp_path / "g.mp4", size=48))
    assert (info["width"], info["height"]) == (144, 48)
    with pytest.raises(RenderError, match="labels"):
        render_grid(anims, tmp_path / "x.mp4", labels=["a"], size=48)
