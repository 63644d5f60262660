"""Exporters: every format round-trips, the Live Link header is exact, GLB re-loads with its morph animation."""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest

from diffusiontalker.animation import Animation
from diffusiontalker.arkit import ARKIT_52, BEAT_51
from diffusiontalker.errors import ExportError
from diffusiontalker.export import FORMATS, export_animation, load_animation, timecode

# The header Live Link Face writes (Timecode, BlendShapeCount, 61 values), as a literal spec string.
LIVELINK_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    "EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,"
    "EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,"
    "MouthRight,MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,"
    "MouthDimpleRight,MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,"
    "MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,"
    "MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,"
    "CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,"
    "LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll"
)


def _anim(T: int = 12, seed: int = 0, fps: float = 30) -> Animation:
    rng = np.random.default_rng(seed)
    return Animation(values=rng.uniform(0, 1, (T, 52)).astype(np.float32), fps=fps, seed=seed, steps=8,
                     identity="ava", model="student-8")


def _vertex_anim(T: int = 5) -> Animation:
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=1, radius=0.1)
    v = np.asarray(s.vertices, np.float32)
    vals = v[None] * (1.0 + 0.1 * np.arange(T)[:, None, None])
    return Animation(values=vals, fps=30, kind="vertex", template=v, faces=np.asarray(s.faces, np.int32))


def test_npy_round_trip_with_sidecar(tmp_path):
    a = _anim()
    p = export_animation(a, tmp_path / "m.npy")
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["seed"] == 0 and meta["names"] == list(ARKIT_52) and meta["fps"] == 30
    b = load_animation(p)
    np.testing.assert_array_equal(a.values, b.values)
    assert (b.seed, b.steps, b.identity, b.model) == (0, 8, "ava", "student-8")


def test_vertex_npy_round_trip_keeps_template_and_faces(tmp_path):
    a = _vertex_anim()
    b = load_animation(export_animation(a, tmp_path / "v.npy"))
    assert b.kind == "vertex"
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.template, b.template)
    np.testing.assert_array_equal(a.faces, b.faces)


def test_livelink_csv_header_is_exact_and_round_trips(tmp_path):
    a = _anim(T=40)
    p = export_animation(a, tmp_path / "take.csv")
    lines = p.read_text().splitlines()
    assert lines[0] == LIVELINK_HEADER
    rows = [ln.split(",") for ln in lines[1:]]
    assert len(rows) == 40 and all(len(r) == 63 and r[1] == "61" for r in rows)
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d:\d\d\.\d{3}", r[0]) for r in rows)
    assert rows[31][0] == "00:00:01:01.033"
    assert all(float(x) == 0.0 for r in rows for x in r[-9:])  # head and eye rotations
    b = load_animation(p)
    assert b.fps == 30
    np.testing.assert_allclose(a.values, b.values, atol=1e-6)


def test_csv_columns_are_written_by_name_not_position(tmp_path):
    w = np.zeros((2, 52), np.float32)
    w[:, ARKIT_52.index("jawLeft")] = 0.7
    w[:, ARKIT_52.index("mouthRight")] = 0.3
    p = export_animation(Animation(values=w), tmp_path / "t.csv")
    header, first = (ln.split(",") for ln in p.read_text().splitlines()[:2])
    row = dict(zip(header, first))
    assert float(row["JawLeft"]) == pytest.approx(0.7) and float(row["JawRight"]) == 0.0
    assert float(row["MouthRight"]) == pytest.approx(0.3) and float(row["MouthLeft"]) == 0.0


def test_blendshape_values_are_clipped_to_unit_range(tmp_path):
    w = np.full((3, 52), 1.5, np.float32)
    w[:, 0] = -0.2
    b = load_animation(export_animation(Animation(values=w), tmp_path / "c.csv"))
    assert b.values.max() == 1.0 and b.values.min() == 0.0


def test_beat_json_uses_the_51_alphabetical_names_and_round_trips(tmp_path):
    a = _anim(T=10, fps=60)
    p = export_animation(a, tmp_path / "take.json", fmt="beat")
    doc = json.loads(p.read_text())
    assert doc["names"] == list(BEAT_51) and len(doc["frames"]) == 10
    fr = doc["frames"][3]
    assert fr["time"] == pytest.approx(3 / 60) and len(fr["weights"]) == 51 and "rotation" in fr
    assert fr["weights"][BEAT_51.index("jawOpen")] == pytest.approx(a.channel("jawOpen")[3], abs=1e-6)
    b = load_animation(p)
    assert b.fps == 60
    keep = [i for i, n in enumerate(ARKIT_52) if n != "tongueOut"]
    np.testing.assert_allclose(a.values[:, keep], b.values[:, keep], atol=1e-6)
    assert np.all(b.channel("tongueOut") == 0)  # BEAT has no tongueOut


def test_glb_has_52_morph_targets_and_a_weight_animation_per_frame(tmp_path):
    import pygltflib

    a = _anim(T=9)
    p = export_animation(a, tmp_path / "head.glb")
    g = pygltflib.GLTF2().load(str(p))
    prim = g.meshes[0].primitives[0]
    assert len(prim.targets) == 52
    assert g.meshes[0].extras["targetNames"] == list(ARKIT_52)
    sampler = g.animations[0].samplers[0]
    assert g.accessors[sampler.input].count == 9
    assert g.accessors[sampler.output].count == 9 * 52
    assert g.animations[0].channels[0].target.path == "weights"
    assert g.accessors[sampler.input].max[0] == pytest.approx(8 / 30)
    # the weights read back equal the clipped curves
    blob = g.binary_blob()
    acc = g.accessors[sampler.output]
    view = g.bufferViews[acc.bufferView]
    w = np.frombuffer(blob, np.float32, count=acc.count, offset=view.byteOffset).reshape(9, 52)
    np.testing.assert_allclose(w, a.values, atol=1e-6)


def test_glb_loads_with_trimesh(tmp_path):
    import trimesh

    p = export_animation(_vertex_anim(T=4), tmp_path / "v.glb")
    scene = trimesh.load(str(p))
    geom = list(scene.geometry.values())[0] if hasattr(scene, "geometry") else scene
    assert len(geom.vertices) == 42


def test_objzip_holds_one_obj_per_frame(tmp_path):
    import trimesh

    a = _vertex_anim(T=3)
    p = export_animation(a, tmp_path / "seq.zip")
    with zipfile.ZipFile(p) as z:
        objs = sorted(n for n in z.namelist() if n.endswith(".obj"))
        assert len(objs) == 3
        z.extract(objs[2], tmp_path)
    m = trimesh.load(str(tmp_path / objs[2]), process=False)
    np.testing.assert_allclose(m.vertices, a.values[2], atol=1e-5)


def test_unknown_format_lists_the_valid_ones(tmp_path):
    with pytest.raises(ExportError, match="csv"):
        export_animation(_anim(), tmp_path / "x.fbx")
    with pytest.raises(ExportError) as e:
        export_animation(_anim(), tmp_path / "x.csv", fmt="fbx")
    assert all(f in str(e.value) for f in FORMATS)
    with pytest.raises(ExportError, match="vertex"):
        export_animation(_vertex_anim(), tmp_path / "v.csv")


def test_timecode_format():
    assert timecode(0, 30) == "00:00:00:00.000"
    assert timecode(3 * 3600 * 30 + 62 * 30 + 2, 30) == "03:01:02:02.067"
