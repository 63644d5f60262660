"""Payloads and HTML of the browser preview (render/preview.py): round trips, sizes, markup. No browser here."""

from __future__ import annotations

import base64
import json
import re
from html import unescape

import numpy as np
import pytest
import trimesh

from diffusiontalker.animation import Animation
from diffusiontalker.arkit import ARKIT_52
from diffusiontalker.errors import RenderError
from diffusiontalker.render import preview
from diffusiontalker.render.rig import HeadRig

JAW = ARKIT_52.index("jawOpen")


def stand_in_rig(subdivisions: int = 3) -> HeadRig:
    """A tiny head-like HeadRig: an icosphere whose lower front opens with jawOpen (any mesh must work)."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.1)
    v = np.asarray(sphere.vertices, np.float32)  # (V, 3)
    f = np.asarray(sphere.faces, np.int32)  # (F, 3), outward winding
    v[:, 1] *= 1.25  # egg-shaped, taller than wide
    colors = np.tile(np.array([222, 170, 138, 255], np.uint8), (len(v), 1))
    mouth = (v[:, 2] > 0.06) & (np.abs(v[:, 1] + 0.05) < 0.02)
    colors[mouth] = (170, 60, 60, 255)
    deltas = np.zeros((52, len(v), 3), np.float32)
    chin = np.clip((-0.04 - v[:, 1]) / 0.06, 0.0, 1.0) * (v[:, 2] > 0)  # lower front moves down and back
    deltas[JAW, :, 1] = -0.03 * chin
    deltas[JAW, :, 2] = -0.01 * chin
    deltas[ARKIT_52.index("mouthSmileLeft"), mouth & (v[:, 0] > 0), 1] = 0.01
    return HeadRig(v, f, colors, deltas, {"lips": np.flatnonzero(mouth)})


def jaw_animation(frames: int = 60, fps: float = 30.0, switch: int = 30, audio: bool = True) -> Animation:
    """jawOpen 0 before frame ``switch`` and 1 from it on; a tone as the audio."""
    w = np.zeros((frames, 52), np.float32)
    w[switch:, JAW] = 1.0
    sound = None
    if audio:
        t = np.arange(int(frames / fps * 16000)) / 16000
        sound = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return Animation(w, fps=fps, audio=sound, model="jaw")


def test_head_payload_round_trips_mesh_colours_and_sparse_deltas():
    rig = stand_in_rig()
    head = preview.head_payload(rig)
    back = preview.decode_head(head)
    assert head["V"] == len(rig.neutral) and head["F"] == len(rig.faces)
    np.testing.assert_array_equal(back["neutral"], rig.neutral)
    np.testing.assert_array_equal(back["faces"], rig.faces)
    np.testing.assert_array_equal(back["colors"], rig.colors)
    np.testing.assert_allclose(back["deltas"], rig.deltas, atol=2e-5)  # float16
    assert head["faces_dtype"] == "u16" and head["morphs"]["names"] == list(ARKIT_52)
    # sparse: only the moving vertices of the two non-zero morphs are sent
    counts = head["morphs"]["counts"]
    assert counts[JAW] >= int((np.abs(rig.deltas[JAW]).max(1) > 0).sum())
    assert sum(c for k, c in enumerate(counts) if k not in (JAW, ARKIT_52.index("mouthSmileLeft"))) == 0


def test_head_normal_deltas_turn_neutral_normals_into_the_shape_normals():
    rig = stand_in_rig()
    back = preview.decode_head(preview.head_payload(rig))
    want = preview.vertex_normals(rig.neutral + rig.deltas[JAW], rig.faces)  # (V, 3)
    got = back["normals"] + back["normal_deltas"][JAW]
    np.testing.assert_allclose(got, want, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(back["normals"], axis=1), 1.0, atol=1e-3)


def test_vertex_normals_point_outward_on_a_sphere():
    rig = stand_in_rig()
    n = preview.vertex_normals(rig.neutral, rig.faces)
    assert (np.sum(n * rig.neutral, axis=1) > 0).all()
    batch = preview.vertex_normals(np.stack([rig.neutral, rig.neutral * 2]), rig.faces)  # (2, V, 3)
    np.testing.assert_allclose(batch[1], n, atol=1e-6)


def test_head_payload_is_cached_per_rig():
    rig = stand_in_rig()
    assert preview.head_payload(rig) is preview.head_payload(rig)
    other = stand_in_rig(subdivisions=2)
    assert preview.head_payload(other)["key"] != preview.head_payload(rig)["key"]


def test_animation_payload_round_trips_weights_matched_by_name():
    rng = np.random.default_rng(0)
    w = rng.random((7, 52)).astype(np.float32)
    shuffled = list(reversed(ARKIT_52))
    a = Animation(w[:, ::-1].copy(), names=tuple(shuffled), model="student-8")
    p = preview.animation_payload([a], rig=stand_in_rig())
    (entry,) = p["anims"]
    assert entry["label"] == "student-8" and entry["frames"] == 7 and entry["fps"] == 30.0
    np.testing.assert_array_equal(preview.decode_array(entry["weights"], "f4", (7, 52)), w)
    assert len(base64.b64decode(entry["weights"])) == 7 * 52 * 4
    assert p["duration"] == pytest.approx(7 / 30)


def test_animation_payload_sends_vertex_offsets_as_float16_over_a_shared_template():
    rig = stand_in_rig(subdivisions=2)
    rng = np.random.default_rng(1)
    offsets = rng.normal(0, 0.003, (5, len(rig.neutral), 3)).astype(np.float32)
    anims = [Animation(rig.neutral[None] + offsets * s, kind="vertex", template=rig.neutral, faces=rig.faces)
             for s in (1.0, 0.5)]
    p = preview.animation_payload(anims, labels=["a", "b"])
    assert p["head"] is None and len(p["meshes"]) == 1  # the template is sent once
    mesh = p["meshes"][0]
    np.testing.assert_array_equal(preview.decode_array(mesh["template"], "f4", (-1, 3)), rig.neutral)
    np.testing.assert_array_equal(preview.decode_array(mesh["faces"], "u2", (-1, 3)), rig.faces)
    for entry, s in zip(p["anims"], (1.0, 0.5)):
        assert entry["mesh"] == 0
        got = preview.decode_array(entry["offsets"], "f2", offsets.shape).astype(np.float32)
        np.testing.assert_allclose(got, offsets * s, atol=1e-5)
        assert len(base64.b64decode(entry["offsets"])) == offsets.size * 2


def test_animation_payload_rejects_what_it_cannot_show():
    a = jaw_animation(audio=False)
    with pytest.raises(RenderError, match="at least one"):
        preview.animation_payload([])
    with pytest.raises(RenderError, match="one label per animation"):
        preview.animation_payload([a, a], labels=["only one"], rig=stand_in_rig())
    with pytest.raises(RenderError, match="no frames"):
        preview.animation_payload([Animation(np.zeros((0, 52)))], rig=stand_in_rig())
    v = Animation(np.zeros((3, 4, 3)), kind="vertex")
    with pytest.raises(RenderError, match="template"):
        preview.animation_payload([v])


def _attr(html: str, name: str) -> str:
    m = re.search(rf'{name}="([^"]*)"', html)
    assert m, f"no {name} attribute"
    return unescape(m.group(1))


def test_preview_html_has_canvas_audio_player_and_payload():
    rig = stand_in_rig()
    anims = [jaw_animation() for _ in range(4)]
    out = preview.preview_html(anims, labels=["teacher", "student", "s1", "s2"], size=512, element_id="pv", rig=rig)
    assert 'id="pv"' in out and "data-dt-player" in out
    assert '<canvas class="dt-canvas" width="512" height="512">' in out  # 2x2 tiles of 256
    assert '<audio class="dt-audio" controls' in out and 'src="data:audio/wav;base64,' in out
    assert "window.DTPlayer" in out and "<script>" in out
    payload = json.loads(_attr(out, "data-dt-anim"))
    assert [e["label"] for e in payload["anims"]] == ["teacher", "student", "s1", "s2"] and payload["cols"] == 2
    head = json.loads(_attr(out, "data-dt-head"))
    assert head["key"] == payload["head"] == _attr(out, "data-dt-head-key")
    wav = base64.b64decode(_attr(out, "src").split(",", 1)[1])
    assert wav[:4] == b"RIFF" and len(wav) == 44 + 2 * len(anims[0].audio)


def test_preview_html_for_gradio_carries_no_script_and_no_head():
    out = preview.preview_html([jaw_animation()] * 2, audio_url="/gradio_api/file=/tmp/a.wav",
                               embed_player=False, embed_head=False, rig=stand_in_rig())
    assert "<script" not in out and "data-dt-head=" not in out
    assert 'src="/gradio_api/file=/tmp/a.wav"' in out
    assert 'width="512" height="256"' in out  # two tiles side by side
    head = preview.player_head(stand_in_rig())
    assert head.count("<script>") == 2 and "registerHead" in head and "function Player" in head
    assert "DTPlayer.scan(element)" in preview.JS_ON_LOAD and "watch('value'" in preview.JS_ON_LOAD


def test_preview_without_audio_has_no_audio_element():
    out = preview.preview_html([jaw_animation(audio=False)], rig=stand_in_rig(), embed_player=False)
    assert "<audio" not in out


def test_standalone_page_and_cli_write_a_full_page(tmp_path):
    rig_anim = jaw_animation(audio=False)
    np.save(tmp_path / "a.npy", rig_anim.values)
    wav = tmp_path / "a.wav"
    wav.write_bytes(preview.wav_bytes(np.zeros(3200, np.float32)))
    out = tmp_path / "page.html"
    assert preview.main([str(tmp_path / "a.npy"), "--wav", str(wav), "--out", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "<canvas" in page and "data:audio/wav;base64," in page
    assert page.rstrip().endswith("</html>")


def test_real_head_payload_is_compact():
    head = preview.head_payload()
    size = len(json.dumps(head))
    dense = 52 * head["V"] * 3 * 4 * 4 / 3  # dense float32 deltas alone, base64
    assert size < 2_000_000 and size < dense / 4
    assert preview.player_js() == preview.PLAYER_JS
