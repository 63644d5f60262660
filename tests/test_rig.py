"""The procedural head: shapes, determinism, visible and correctly-sided ARKit deformations."""

from __future__ import annotations

import numpy as np
import pytest

from diffusiontalker.arkit import ARKIT_52
from diffusiontalker.errors import RenderError
from diffusiontalker.render.rig import build_head, load_head


@pytest.fixture(scope="module")
def rig():
    return load_head()


def test_head_arrays_have_the_documented_shapes(rig):
    V = rig.num_vertices
    assert 3000 <= V <= 9000
    assert rig.neutral.shape == (V, 3) and rig.neutral.dtype == np.float32
    assert rig.faces.dtype == np.int32 and rig.faces.min() >= 0 and rig.faces.max() < V
    assert rig.colors.shape == (V, 4) and rig.colors.dtype == np.uint8
    assert rig.deltas.shape == (52, V, 3) and rig.deltas.dtype == np.float32
    assert np.all(np.isfinite(rig.deltas))
    for name in ("lips", "upper_face", "eyes", "mouth", "jaw", "skin", "teeth"):
        idx = rig.regions[name]
        assert len(idx) > 0 and idx.max() < V


def test_head_is_a_human_sized_face_looking_toward_plus_z(rig):
    ext = np.ptp(rig.neutral[rig.regions["skin"]], axis=0)
    assert 0.12 < ext[0] < 0.2 and 0.18 < ext[1] < 0.28  # metres
    # the nose tip is the front-most skin point, on the midline
    skin = rig.neutral[rig.regions["skin"]]
    tip = skin[np.argmax(skin[:, 2])]
    assert abs(tip[0]) < 0.005


def test_build_is_deterministic():
    a, b = build_head(), build_head()
    np.testing.assert_array_equal(a.neutral, b.neutral)
    np.testing.assert_array_equal(a.deltas, b.deltas)
    np.testing.assert_array_equal(a.faces, b.faces)


def test_apply_blends_morph_targets_vectorised(rig):
    w = np.zeros((3, 52), np.float32)
    w[1, ARKIT_52.index("jawOpen")] = 1.0
    w[2, ARKIT_52.index("jawOpen")] = 0.5
    out = rig.apply(w)
    assert out.shape == (3, rig.num_vertices, 3)
    np.testing.assert_allclose(out[0], rig.neutral, atol=1e-7)
    np.testing.assert_allclose(out[1], rig.neutral + rig.deltas[17], atol=1e-6)
    np.testing.assert_allclose(out[2] - rig.neutral, 0.5 * rig.deltas[17], atol=1e-6)
    assert rig.apply(w[1]).shape == (rig.num_vertices, 3)
    with pytest.raises(RenderError, match="52"):
        rig.apply(np.zeros((4, 51)))


def test_every_shape_is_clearly_visible(rig):
    peak_mm = np.abs(rig.deltas).max(axis=(1, 2)) * 1000
    weak = [n for n, p in zip(ARKIT_52, peak_mm) if p < 3.0]
    assert not weak, f"shapes moving less than 3 mm: {weak}"


@pytest.mark.parametrize("name", [n for n in ARKIT_52 if n.endswith("Left")])
def test_left_shapes_move_the_subjects_left_side(rig, name):
    """ARKit 'Left' is the subject's left, which is +X in this rig (the viewer's right)."""
    for shape, sign in ((name, 1.0), (name[:-4] + "Right", -1.0)):
        d = rig.deltas[ARKIT_52.index(shape)]
        if shape.startswith(("jaw", "mouthLeft", "mouthRight")):  # whole-jaw / whole-mouth shifts toward a side
            assert sign * d[:, 0].mean() > 0
            continue
        mag = np.linalg.norm(d, axis=1)
        x_centre = float((mag * rig.neutral[:, 0]).sum() / mag.sum())
        assert sign * x_centre > 0.005, f"{shape} moves vertices around x={x_centre:.4f} m"


def test_blink_closes_the_eye_and_jaw_open_drops_the_jaw(rig):
    eye_skin = rig.regions["skin"][
        (np.abs(rig.neutral[rig.regions["skin"], 0] - 0.031) < 0.01)
        & (np.abs(rig.neutral[rig.regions["skin"], 1] - 0.019) < 0.004)]  # the left upper lid
    blink = rig.deltas[ARKIT_52.index("eyeBlinkLeft")]
    assert blink[eye_skin, 1].min() < -0.005  # the lid comes down by several mm
    jaw = rig.deltas[ARKIT_52.index("jawOpen")]
    assert jaw[rig.regions["jaw"], 1].mean() < -0.008
    assert np.abs(jaw[rig.regions["eyes"]]).max() == 0.0
    teeth_moved = np.abs(jaw[rig.regions["teeth"]]).max(axis=1) > 0
    assert 0 < teeth_moved.sum() < len(rig.regions["teeth"])  # lower teeth follow, upper stay


def test_eye_look_rotates_eyeballs_toward_the_named_side(rig):
    left_eye = rig.regions["eye_left"]
    front = left_eye[np.argmax(rig.neutral[left_eye, 2])]  # the pupil centre
    d_out = rig.deltas[ARKIT_52.index("eyeLookOutLeft"), front]
    d_in = rig.deltas[ARKIT_52.index("eyeLookInLeft"), front]
    assert d_out[0] > 0.003 and d_in[0] < -0.003  # out = toward the subject's left (+X) for the left eye
    d_up = rig.deltas[ARKIT_52.index("eyeLookUpLeft"), front]
    assert d_up[1] > 0.003
