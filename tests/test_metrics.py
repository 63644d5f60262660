"""Metrics against values computed by hand on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffusiontalker import metrics as M
from diffusiontalker.arkit import ARKIT_52
from diffusiontalker.errors import DiffusionTalkerError


def _two_frames() -> tuple[np.ndarray, np.ndarray]:
    """pred zeros, gt with known per-vertex errors: frame 0 -> 1, 4, 9 (squared); frame 1 -> 2, 0, 0."""
    pred = np.zeros((2, 3, 3))
    gt = np.zeros((2, 3, 3))
    gt[0, 0] = (1, 0, 0)
    gt[0, 1] = (0, 2, 0)
    gt[0, 2] = (3, 0, 0)
    gt[1, 0] = (1, 1, 0)
    return pred, gt


def test_lip_vertex_error_is_mean_over_frames_of_max_squared_lip_error():
    pred, gt = _two_frames()
    assert M.lip_vertex_error(pred, gt, [0, 1]) == pytest.approx((4 + 2) / 2)
    # the non-lip vertex 2 (error 9) counts only when it is a lip vertex
    assert M.lip_vertex_error(pred, gt, [0, 1, 2]) == pytest.approx((9 + 2) / 2)
    # flattened (T, 3V) layout gives the same
    assert M.lip_vertex_error(pred.reshape(2, -1), gt.reshape(2, -1), [0, 1]) == pytest.approx(3.0)


def test_mean_vertex_error_averages_l2_distances():
    pred, gt = _two_frames()
    assert M.mean_vertex_error(pred, gt) == pytest.approx((1 + 2 + 3 + math.sqrt(2)) / 6)


def test_fdd_is_gt_minus_pred_dynamics_relative_to_template():
    template = np.zeros((3, 3))
    template[2] = (1, 0, 0)
    gt = np.tile(template, (2, 1, 1))
    gt[1, 2] = (3, 0, 0)  # squared displacement of vertex 2: 0 then 4 -> std 2
    pred = np.tile(template, (2, 1, 1))  # never moves -> std 0
    assert M.upper_face_dynamics_deviation(pred, gt, template, [2]) == pytest.approx(2.0)
    assert M.upper_face_dynamics_deviation(gt, pred, template, [2]) == pytest.approx(-2.0)
    # vertices 0, 1 never move: the mean over 3 upper vertices is 2/3
    assert M.upper_face_dynamics_deviation(pred, gt, template, [0, 1, 2]) == pytest.approx(2 / 3)
    # offsets (template None) give the same
    assert M.upper_face_dynamics_deviation(pred - template, gt - template, None, [2]) == pytest.approx(2.0)


def test_lip_error_uses_mouth_channels_by_name():
    names = ["jawOpen", "eyeBlinkLeft", "mouthClose"]
    pred = np.zeros((2, 3))
    gt = np.array([[3.0, 100.0, 4.0], [0.0, 7.0, 0.0]])
    assert M.lip_error(pred, gt, names) == pytest.approx((5 + 0) / 2)
    # the channel order does not matter, only the names
    perm = [2, 0, 1]
    assert M.lip_error(pred[:, perm], gt[:, perm], [names[i] for i in perm]) == pytest.approx(2.5)
    assert M.mve_blendshape(pred, gt) == pytest.approx((math.sqrt(9 + 1e4 + 16) + 7) / 2)


def test_fdd_blendshape_is_std_of_summed_squared_upper_channels():
    names = ["eyeBlinkLeft", "browInnerUp", "jawOpen"]
    gt = np.array([[1.0, 0.0, 5.0], [0.0, 0.0, 5.0], [1.0, 1.0, 0.0]])  # upper sums of squares 1, 0, 2
    pred = np.zeros_like(gt)
    assert M.fdd_blendshape(pred, gt, names) == pytest.approx(math.sqrt(2 / 3))
    assert M.fdd_blendshape(gt, gt, names) == pytest.approx(0.0)


def test_diversity_is_mean_pairwise_distance():
    samples = np.array([[[0.0, 0.0]], [[3.0, 4.0]], [[0.0, 0.0]]])  # (S=3, T=1, D=2): pairs 5, 0, 5
    assert M.diversity(samples) == pytest.approx(10 / 3)
    two_frames = np.concatenate([samples, np.zeros_like(samples)], axis=1)  # second frame identical -> halves
    assert M.diversity(two_frames) == pytest.approx(5 / 3)
    verts = np.zeros((2, 1, 2, 3))
    verts[1, 0, 0] = (3, 4, 0)  # per-vertex distances 5 and 0
    assert M.diversity(verts, vertex=True) == pytest.approx(2.5)
    assert M.diversity(verts.reshape(2, 1, 6), vertex=True) == pytest.approx(2.5)
    assert math.isnan(M.diversity(samples[:1]))


def test_identity_accuracy_top_k():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    labels = [1, 1, 0]
    assert M.identity_accuracy(scores, labels, 1) == pytest.approx(1 / 3)
    assert M.identity_accuracy(scores, labels, 2) == pytest.approx(2 / 3)
    assert M.identity_accuracy(scores, labels, 3) == pytest.approx(1.0)
    assert M.identity_accuracy(scores, labels, 5) == pytest.approx(1.0)  # k above K means every identity
    with pytest.raises(DiffusionTalkerError, match="one label per row"):
        M.identity_accuracy(scores, [0, 1], 1)


def test_pearson():
    assert M.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert M.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(50), rng.standard_normal(50)
    assert M.pearson(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert math.isnan(M.pearson([1, 1, 1], [1, 2, 3]))


def test_motion_std_ratio_compares_mouth_channels_only():
    names = ["jawOpen", "eyeBlinkLeft"]
    gt = np.array([[0.0, 0.0], [2.0, 0.0]])  # jaw std 1
    pred = np.array([[0.0, 5.0], [1.0, -5.0]])  # jaw std 0.5; the blink channel is ignored
    assert M.motion_std_ratio(pred, gt, names) == pytest.approx(0.5)
    assert M.motion_std_ratio(gt, gt, names) == pytest.approx(1.0)


def test_blink_rate_counts_onsets_per_minute():
    names = ["eyeBlinkLeft", "eyeBlinkRight", "jawOpen"]
    v = np.zeros((60, 3))  # 2 s at 30 fps
    v[10:15, :2] = 1.0  # blink 1
    v[30:34, :2] = 0.8  # blink 2
    v[50] = (0.6, 0.2, 0.0)  # one eye half closed: mean 0.4 < 0.5, not a blink
    v[:, 2] = 1.0  # jaw does not matter
    assert M.blink_rate(v, names, fps=30) == pytest.approx(2 / 2 * 60)
    v[0, :2] = 1.0  # starting closed counts as a blink
    assert M.blink_rate(v, names, fps=30) == pytest.approx(3 / 2 * 60)
    assert M.blink_rate(v, names, fps=30, threshold=0.9) == pytest.approx(2 / 2 * 60)


def test_channel_spread_is_std_across_samples():
    names = ["jawOpen", "eyeBlinkLeft"]
    samples = np.array([[[0.0, 10.0]], [[2.0, 10.0]]])  # jaw differs by 2 -> std 1; blink equal -> 0
    assert M.channel_spread(samples, names, ["jawOpen"]) == pytest.approx(1.0)
    assert M.channel_spread(samples, names, ["eyeBlinkLeft"]) == pytest.approx(0.0)
    assert M.channel_spread(samples, names, names) == pytest.approx(0.5)
    assert M.channel_spread(samples, None, [0]) == pytest.approx(1.0)


def test_jitter_is_mean_acceleration():
    t = np.arange(5, dtype=float)
    assert M.jitter((t**2)[:, None], fps=30) == pytest.approx(2 * 30**2)
    assert M.jitter(np.stack([3 * t, t], 1), fps=30) == pytest.approx(0.0)
    assert math.isnan(M.jitter(np.zeros((2, 3)), fps=30))


def test_full_arkit_layout_and_errors():
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 1, (20, 52))
    assert M.lip_error(gt, gt, ARKIT_52) == 0.0
    assert M.fdd_blendshape(gt, gt, ARKIT_52) == 0.0
    with pytest.raises(DiffusionTalkerError, match="differ in shape"):
        M.mve_blendshape(gt, gt[:10])
    with pytest.raises(DiffusionTalkerError, match="none of the channels"):
        M.lip_error(gt[:, :2], gt[:, :2], ["eyeBlinkLeft", "browInnerUp"])
    with pytest.raises(DiffusionTalkerError, match="mesh has 3 vertices"):
        M.lip_vertex_error(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), [5])


def test_format_metric_cells():
    from diffusiontalker.metrics import format_metric

    assert format_metric(None) == "—" and format_metric(float("nan")) == "—"
    assert format_metric(0.123456) == "0.1235"
    assert format_metric(12.34) == "12.3"
    assert format_metric(5e-4) == "5.00e-04"
    assert format_metric(0.0) == "0.0000"
    assert format_metric(0.934, "pct") == "93%"
    assert format_metric(65.54, "x") == "×65.5"
    assert format_metric(3.0, "int") == "3"
