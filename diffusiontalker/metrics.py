"""Evaluation metrics as the speech-driven face animation field computes them, plus a few diagnostics of our own.

Pure numpy, vectorised. Every function takes plain arrays at one frame rate and returns a float.

Vertex data (FaceFormer / CodeTalker / FaceDiffuser on VOCASET and BIWI), motion ``(T, V, 3)`` or ``(T, V*3)``:

- **LVE** ``lip_vertex_error``: per frame, the max over lip vertices of the squared L2 error; mean over frames.
- **MVE** ``mean_vertex_error``: the L2 error of every vertex, averaged over vertices and frames.
- **FDD** ``upper_face_dynamics_deviation``: per upper-face vertex, the std over time of its squared displacement
  from the template; mean over vertices; ground truth minus prediction.

Blendshape data (FaceDiffuser on BEAT), motion ``(T, D)`` with channel ``names`` (ARKit names; regions are chosen
**by name**, never by position):

- **lip error** ``lip_error``: mean over frames of the L2 norm of the error over the mouth channels.
- **MVE** ``mve_blendshape``: the same over all channels.
- **FDD** ``fdd_blendshape``: std over time of the summed squared upper-face channels, GT − prediction.

Both kinds: ``diversity`` (mean pairwise distance between samples of one audio), ``identity_accuracy`` (top-k
matching), and diagnostics for few-step students: ``motion_std_ratio`` (did the mouth go flat?), ``pearson``
(jawOpen tracking), ``blink_rate``, ``channel_spread`` (stochastic vs lip spread across samples) and ``jitter``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from diffusiontalker.arkit import MOUTH_CHANNELS, UPPER_FACE_CHANNELS
from diffusiontalker.errors import DiffusionTalkerError

__all__ = [
    "lip_vertex_error", "mean_vertex_error", "upper_face_dynamics_deviation", "lip_error", "mve_blendshape",
    "fdd_blendshape", "diversity", "identity_accuracy", "pearson", "motion_std_ratio", "blink_rate",
    "channel_spread", "jitter", "channel_indices",
]

BLINK_CHANNELS: tuple[str, ...] = ("eyeBlinkLeft", "eyeBlinkRight")


# ---------------------------------------------------------------------------------------------------------------
# helpers
def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise DiffusionTalkerError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape; crop both "
                                   f"to the same number of frames first")
    if pred.ndim < 2 or pred.shape[0] == 0:
        raise DiffusionTalkerError(f"motion must be (T, ...) with at least one frame, got {pred.shape}")
    return pred, gt


def _vertices(x: np.ndarray) -> np.ndarray:
    """(T, V, 3) or (T, V*3) -> (T, V, 3)."""
    if x.ndim == 3 and x.shape[-1] == 3:
        return x
    if x.ndim == 2 and x.shape[-1] % 3 == 0:
        return x.reshape(x.shape[0], -1, 3)
    raise DiffusionTalkerError(f"vertex motion must be (T, V, 3) or (T, V*3), got {x.shape}")


def _index(idx: Sequence[int] | np.ndarray, size: int, what: str) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise DiffusionTalkerError(f"the {what} index list is empty")
    if idx.min() < 0 or idx.max() >= size:
        raise DiffusionTalkerError(f"the {what} indices run from {idx.min()} to {idx.max()} but the mesh has {size} "
                                   f"vertices; is the index file for this topology?")
    return idx


def channel_indices(names: Sequence[str], channels: Sequence[str], strict: bool = False) -> np.ndarray:
    """Positions of ``channels`` in ``names`` (by name). Channels absent from ``names`` are skipped unless
    ``strict``; an error names the problem when none is present."""
    pos = {n: i for i, n in enumerate(names)}
    missing = [c for c in channels if c not in pos]
    if strict and missing:
        raise DiffusionTalkerError(f"channel(s) {missing} are not among the motion's channel names")
    idx = [pos[c] for c in channels if c in pos]
    if not idx:
        raise DiffusionTalkerError(f"none of the channels {list(channels)[:4]}... is among the motion's channel names "
                                   f"{list(names)[:4]}...; pass ARKit names such as 'jawOpen'")
    return np.asarray(idx, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------------
# vertex metrics
def lip_vertex_error(pred: np.ndarray, gt: np.ndarray, lip_idx: Sequence[int] | np.ndarray) -> float:
    """LVE = mean_t max_{v in lips} ||pred_{t,v} - gt_{t,v}||^2.

    Args:
        pred, gt: (T, V, 3) or (T, V*3) vertex positions (or offsets from one template).
        lip_idx: indices of the lip vertices.
    """
    pred, gt = _pair(pred, gt)
    p, g = _vertices(pred), _vertices(gt)
    idx = _index(lip_idx, p.shape[1], "lip")
    sq = ((p[:, idx] - g[:, idx]) ** 2).sum(-1)  # (T, L) squared L2 per lip vertex
    return float(sq.max(axis=1).mean())


def mean_vertex_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """MVE = mean_{t,v} ||pred_{t,v} - gt_{t,v}||  (the L2 distance of every vertex, averaged)."""
    pred, gt = _pair(pred, gt)
    p, g = _vertices(pred), _vertices(gt)
    return float(np.linalg.norm(p - g, axis=-1).mean())


def upper_face_dynamics_deviation(pred: np.ndarray, gt: np.ndarray, template: np.ndarray | None,
                                  upper_idx: Sequence[int] | np.ndarray) -> float:
    """FDD = mean_{v in upper} std_t ||gt_{t,v} - tpl_v||^2  -  mean_{v in upper} std_t ||pred_{t,v} - tpl_v||^2.

    Positive: the prediction's upper face moves less than the ground truth's. ``template`` (V, 3) is the neutral
    mesh; pass None when ``pred`` and ``gt`` already are offsets from it.
    """
    pred, gt = _pair(pred, gt)
    p, g = _vertices(pred), _vertices(gt)
    idx = _index(upper_idx, p.shape[1], "upper-face")
    tpl = np.zeros((p.shape[1], 3)) if template is None else np.asarray(template, dtype=np.float64).reshape(-1, 3)
    if tpl.shape[0] != p.shape[1]:
        raise DiffusionTalkerError(f"template has {tpl.shape[0]} vertices, the motion {p.shape[1]}")

    def dynamics(x: np.ndarray) -> float:
        disp = ((x[:, idx] - tpl[idx][None]) ** 2).sum(-1)  # (T, U) squared displacement from the template
        return float(disp.std(axis=0).mean())

    return dynamics(g) - dynamics(p)


# ---------------------------------------------------------------------------------------------------------------
# blendshape metrics
def lip_error(pred: np.ndarray, gt: np.ndarray, names: Sequence[str],
              mouth: Sequence[str] = MOUTH_CHANNELS) -> float:
    """Lip error = mean_t ||pred_{t,M} - gt_{t,M}||_2 over the mouth channels M (chosen by name)."""
    pred, gt = _pair(pred, gt)
    idx = channel_indices(names, mouth)
    return float(np.linalg.norm(pred[:, idx] - gt[:, idx], axis=-1).mean())


def mve_blendshape(pred: np.ndarray, gt: np.ndarray) -> float:
    """MVE (blendshapes) = mean_t ||pred_t - gt_t||_2 over all channels."""
    pred, gt = _pair(pred, gt)
    return float(np.linalg.norm(pred - gt, axis=-1).mean())


def fdd_blendshape(pred: np.ndarray, gt: np.ndarray, names: Sequence[str],
                   upper: Sequence[str] = UPPER_FACE_CHANNELS) -> float:
    """FDD (blendshapes) = std_t(sum_{c in U} gt_{t,c}^2) - std_t(sum_{c in U} pred_{t,c}^2), U = upper-face
    channels (eyes and brows, by name)."""
    pred, gt = _pair(pred, gt)
    idx = channel_indices(names, upper)
    return float((gt[:, idx] ** 2).sum(-1).std() - (pred[:, idx] ** 2).sum(-1).std())


# ---------------------------------------------------------------------------------------------------------------
# both kinds
def diversity(samples: np.ndarray, vertex: bool = False) -> float:
    """Mean pairwise distance between S samples (S, T, ...) generated for the same audio.

    d(i, j) = mean_t ||x_i,t - x_j,t||_2 (over all channels) for blendshapes; for ``vertex=True`` the distance is
    averaged over vertices too, mean_{t,v} ||x_i,t,v - x_j,t,v|| (as FaceDiffuser). Diversity = mean_{i<j} d(i, j);
    NaN for fewer than two samples.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim < 3:
        raise DiffusionTalkerError(f"samples must be (S, T, ...), got {x.shape}")
    S = x.shape[0]
    if S < 2:
        return float("nan")
    x = x.reshape(S, x.shape[1], -1, 3) if vertex else x.reshape(S, x.shape[1], -1)  # (S, T, V, 3) | (S, T, D)
    i, j = np.triu_indices(S, k=1)
    diff = x[i] - x[j]  # (P, T, ...)
    return float(np.linalg.norm(diff, axis=-1).reshape(len(i), -1).mean())


def identity_accuracy(scores: np.ndarray, labels: Sequence[int] | np.ndarray, k: int = 1) -> float:
    """Fraction of clips whose true identity ``labels[n]`` is among the top-``k`` of ``scores`` (N, K)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise DiffusionTalkerError(f"scores must be (N, K) with one label per row; got {scores.shape} and "
                                   f"{labels.shape[0]} labels")
    if scores.shape[0] == 0:
        return float("nan")
    if k < 1:
        raise DiffusionTalkerError(f"k must be at least 1, got {k}")
    k = min(k, scores.shape[1])
    # rank of the true label = number of identities scoring strictly higher (ties favour the label)
    true = scores[np.arange(len(labels)), labels]
    rank = (scores > true[:, None]).sum(1)
    return float((rank < k).mean())


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation r of two equally long curves (flattened); NaN when either is constant."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise DiffusionTalkerError(f"curves differ in length: {a.size} and {b.size}")
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 1e-12 else float("nan")


def motion_std_ratio(pred: np.ndarray, gt: np.ndarray, names: Sequence[str] | None = None,
                     channels: Sequence[str] = MOUTH_CHANNELS) -> float:
    """mean_c std_t(pred_c) / mean_c std_t(gt_c) over the mouth channels (by name; all channels when ``names`` is
    None). Near 1: the prediction moves as much as the truth; far below 1: a few-step student went flat."""
    pred, gt = _pair(pred, gt)
    pred, gt = pred.reshape(pred.shape[0], -1), gt.reshape(gt.shape[0], -1)
    idx = channel_indices(names, channels) if names is not None else slice(None)
    den = gt[:, idx].std(0).mean()
    return float(pred[:, idx].std(0).mean() / den) if den > 1e-12 else float("nan")


def blink_rate(values: np.ndarray, names: Sequence[str], fps: float, threshold: float = 0.5) -> float:
    """Blinks per minute: onsets (upward crossings of ``threshold``) of the mean of eyeBlinkLeft/Right.

    The eyes count as open before the first frame, so a clip starting mid-blink counts that blink.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] == 0:
        raise DiffusionTalkerError(f"blendshape values must be (T, D) with frames, got {values.shape}")
    if fps <= 0:
        raise DiffusionTalkerError(f"fps must be positive, got {fps}")
    eyes = values[:, channel_indices(names, BLINK_CHANNELS)].mean(-1)  # (T,)
    closed = np.concatenate([[False], eyes >= threshold])
    onsets = int((closed[1:] & ~closed[:-1]).sum())
    return onsets / (values.shape[0] / fps) * 60.0


def channel_spread(samples: np.ndarray, names: Sequence[str] | None, channels: Sequence[str] | Sequence[int]
                   ) -> float:
    """mean_{t,c} std_s(x_{s,t,c}): how much S samples (S, T, D) of one audio disagree on the given channels.

    ``channels`` are names looked up in ``names``, or integer indices when ``names`` is None. The ratio of the
    spread of the stochastic channels (blinks, brows) to that of the lip channels shows whether the model puts its
    randomness where the data has it. NaN for fewer than two samples.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 3:
        raise DiffusionTalkerError(f"samples must be (S, T, D), got {x.shape}")
    if x.shape[0] < 2:
        return float("nan")
    idx = channel_indices(names, channels) if names is not None else np.asarray(channels, dtype=np.int64)
    return float(x[:, :, idx].std(axis=0).mean())


def jitter(values: np.ndarray, fps: float) -> float:
    """Mean acceleration magnitude: mean_t ||x_{t+1} - 2 x_t + x_{t-1}||_2 · fps^2 (units per s^2).

    Compare a prediction's jitter with the ground truth's: a much larger value means the motion shakes.
    NaN for fewer than three frames.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x.reshape(x.shape[0], -1)  # (T, D)
    if x.shape[0] < 3:
        return float("nan")
    acc = x[2:] - 2 * x[1:-1] + x[:-2]  # (T-2, D)
    return float(np.linalg.norm(acc, axis=-1).mean() * fps**2)


# ---------------------------------------------------------------------------------------------------------------
# tables
def format_metric(v: float | None, style: str = "num") -> str:
    """A metric for a table cell: '—' when missing or NaN; styles num (4 decimals, or scientific below 1e-3),
    pct (0.93 -> 93%), x (speed-up, ×12.3), int."""
    if v is None or not np.isfinite(v):
        return "—"
    if style == "pct":
        return f"{100 * v:.0f}%"
    if style == "x":
        return f"×{v:.1f}"
    if style == "int":
        return f"{int(v)}"
    if v != 0 and abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
