"""A procedural ARKit-52 head, built in code (numpy) — no downloaded asset.

Coordinates (right-handed, metres): +Y up, the head faces **+Z** (toward the camera), **+X is the subject's
left**, i.e. the viewer's RIGHT in a front view. ARKit "Left" shapes (``eyeBlinkLeft``, ``mouthSmileLeft``…)
therefore move the +X side.

Construction:
* the skin is one closed (theta, phi) grid around the head centre, denser on the face; the eyes and the mouth
  are *slits*: a grid row whose vertices are duplicated over a column range, so the upper and lower lids / lips
  are separate vertices that can open (neutral) and close (eyeBlink) without tearing the rest of the surface;
* eyeballs are sphere meshes with the pole on +Z (iris and pupil are exact rings); the lids wrap around them;
* a dark mouth cavity (an inside-out ellipsoid), upper and lower teeth and a tongue sit behind the lips;
* every ARKit shape is an analytic displacement field over the neutral vertices (or a rebuild of the skin with
  lid parameters for the blink/squint/look shapes); ``deltas[k] = shape_k - neutral``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffusiontalker.arkit import ARKIT_52
from diffusiontalker.errors import RenderError

MM = 1e-3  # the rig is designed in millimetres and stored in metres

# ----------------------------------------------------------------------------------------------------------------
# layout (millimetres, head centre at the origin)
AX, AY_TOP, AY_BOT, AZ_FRONT, AZ_BACK = 74.0, 112.0, 118.0, 92.0, 100.0
EYE_X, EYE_Y, EYE_R = 31.0, 14.0, 13.5          # eyeball centres (+-EYE_X, EYE_Y) and radius
EYE_HALF_W, EYE_UP, EYE_DOWN = 11.5, 5.2, 3.6    # eye opening half width and lid openings (mm)
MOUTH_Y, MOUTH_HALF_W = -47.0, 24.0             # mouth slit height and half width
JAW_PIVOT = np.array([0.0, -8.0, 8.0])           # jaw hinge (in front of the ears)

SKIN = (214, 158, 124)
LIP = (158, 60, 66)
HAIR = (58, 40, 30)
BROW = (72, 50, 36)
LASH = (40, 28, 24)
SCLERA = (240, 236, 228)
IRIS = (72, 110, 150)
PUPIL = (12, 10, 10)
TEETH = (240, 234, 218)
CAVITY = (52, 12, 16)
TONGUE = (196, 88, 96)
GUM = (180, 80, 88)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return np.exp(-(((x - cx) / rx) ** 2) - ((y - cy) / ry) ** 2)


def _rot_x(a: np.ndarray) -> np.ndarray:
    """(N,) angles -> (N, 3, 3) rotations about +X."""
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _rot_y(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


# ----------------------------------------------------------------------------------------------------------------
# skin grid
@dataclass
class _Grid:
    theta: np.ndarray     # (N,) azimuth, 0 = front, + toward +X
    phi: np.ndarray       # (N,) elevation
    eye_side: np.ndarray  # (N,) +1 above the eye slit row (and its upper copies), -1 below, per vertex
    mouth_side: np.ndarray
    faces: np.ndarray     # (F, 3)
    eye_row_phi: float
    mouth_row_phi: float
    upper_lid: np.ndarray  # (N,) bool: the upper-lid margin vertices
    lower_lid: np.ndarray
    upper_lip_edge: np.ndarray
    lower_lip_edge: np.ndarray


def _theta_of(s: np.ndarray) -> np.ndarray:
    beta = 0.34  # slope at the front relative to uniform: < 1 means denser on the face
    return np.pi * ((1.0 - beta) * s**3 + beta * s)


def _phi_of(s: np.ndarray, centre: float = np.radians(-12.0)) -> np.ndarray:
    a = np.radians(46.0)
    up = np.pi / 2 - centre - a
    lo = np.pi / 2 + centre - a
    return centre + np.where(s >= 0, a * s + up * s**3, a * s + lo * s**3)


def _base_y(phi: np.ndarray) -> np.ndarray:
    return np.where(phi >= 0, AY_TOP, AY_BOT) * np.sin(phi)


def _build_grid(nu: int = 88, nv: int = 76) -> _Grid:
    su = -1.0 + (2.0 * np.arange(nu) + 1.0) / nu                   # symmetric columns
    sv = -1.0 + 2.0 * np.arange(1, nv) / nv                          # interior rows, bottom -> top
    th = _theta_of(su)
    ph = _phi_of(sv)
    nrow = len(ph)
    # slit rows: the rows nearest the eye and mouth heights
    ye = _base_y(ph)
    j_eye = int(np.argmin(np.abs(ye - EYE_Y)))
    j_mouth = int(np.argmin(np.abs(ye - MOUTH_Y)))
    # columns of each slit (by front-projected x on that row)
    x_eye = AX * np.sin(th) * np.cos(ph[j_eye])
    x_mouth = AX * np.sin(th) * np.cos(ph[j_mouth]) * _jaw_taper(np.array(MOUTH_Y))
    eye_cols = np.where((np.abs(np.abs(x_eye) - EYE_X) < EYE_HALF_W) & (np.cos(th) > 0))[0]
    mouth_cols = np.where((np.abs(x_mouth) < MOUTH_HALF_W) & (np.cos(th) > 0))[0]

    grid_idx = np.arange(nrow * nu).reshape(nrow, nu)
    theta = np.tile(th, nrow)
    phi = np.repeat(ph, nu)
    rows = np.repeat(np.arange(nrow), nu)
    n = nrow * nu
    # lower copies of the slit vertices
    copy_eye = {int(c): n + i for i, c in enumerate(eye_cols)}
    n += len(eye_cols)
    copy_mouth = {int(c): n + i for i, c in enumerate(mouth_cols)}
    n += len(mouth_cols)
    theta = np.concatenate([theta, th[eye_cols], th[mouth_cols]])
    phi = np.concatenate([phi, np.full(len(eye_cols), ph[j_eye]), np.full(len(mouth_cols), ph[j_mouth])])
    rows = np.concatenate([rows, np.full(len(eye_cols), j_eye), np.full(len(mouth_cols), j_mouth)])
    is_copy_eye = np.zeros(n + 2, bool)
    is_copy_eye[list(copy_eye.values())] = True
    is_copy_mouth = np.zeros(n + 2, bool)
    is_copy_mouth[list(copy_mouth.values())] = True
    bottom, top = n, n + 1
    theta = np.concatenate([theta, [0.0, 0.0]])
    phi = np.concatenate([phi, [-np.pi / 2, np.pi / 2]])
    rows = np.concatenate([rows, [-1, nrow]])

    faces = []
    for j in range(nrow - 1):
        for k in range(nu):
            k2 = (k + 1) % nu
            a, b = grid_idx[j, k], grid_idx[j, k2]          # lower row of the quad
            c, d = grid_idx[j + 1, k2], grid_idx[j + 1, k]  # upper row
            # the quad lies ABOVE row j: its row-j vertices are the upper (original) copies - nothing to swap.
            # it lies BELOW row j+1: if row j+1 is a slit row use the lower copies there.
            if j + 1 == j_eye:
                c, d = copy_eye.get(k2, c), copy_eye.get(k, d)
            if j + 1 == j_mouth:
                c, d = copy_mouth.get(k2, c), copy_mouth.get(k, d)
            faces.append((a, b, c))
            faces.append((a, c, d))
    for k in range(nu):
        k2 = (k + 1) % nu
        faces.append((bottom, grid_idx[0, k2], grid_idx[0, k]))
        faces.append((top, grid_idx[nrow - 1, k], grid_idx[nrow - 1, k2]))
    faces = np.asarray(faces, np.int32)

    def side(j_slit: int, is_copy: np.ndarray) -> np.ndarray:
        s = np.where(rows >= j_slit, 1.0, -1.0)
        s[is_copy] = -1.0
        return s

    upper_lid = np.zeros(len(theta), bool)
    upper_lid[grid_idx[j_eye, eye_cols]] = True
    lower_lid = is_copy_eye.copy()
    upper_lip = np.zeros(len(theta), bool)
    upper_lip[grid_idx[j_mouth, mouth_cols]] = True
    return _Grid(theta, phi, side(j_eye, is_copy_eye), side(j_mouth, is_copy_mouth), faces, float(ph[j_eye]),
                 float(ph[j_mouth]), upper_lid, lower_lid, upper_lip, is_copy_mouth.copy())


def _jaw_taper(y: np.ndarray) -> np.ndarray:
    """Width factor: the lower face is narrower than the skull."""
    return 1.0 - 0.20 * _smoothstep(-20.0, -112.0, y) ** 1.5 - 0.04 * _smoothstep(20.0, 110.0, y)


@dataclass
class _LidParams:
    """Per-eye lid motion as fractions: upper closes (1 = blink line, < 0 raises), lower rises."""

    upper: tuple[float, float] = (0.0, 0.0)  # (right eye at -X, left eye at +X)
    lower: tuple[float, float] = (0.0, 0.0)


def _eye_profile(theta: np.ndarray, phi_row: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Opening profile of the eye slit at each vertex's column: (t in [-1,1] across the eye, eye index, inside)."""
    x = AX * np.sin(theta) * np.cos(phi_row)
    eye = (x > 0).astype(int)  # 0 = right eye (-X), 1 = left eye (+X)
    t = (np.abs(x) - EYE_X) / EYE_HALF_W
    inside = (np.abs(t) < 1.0) & (np.cos(theta) > 0)
    return t, eye, inside


def _skin_positions(g: _Grid, lids: _LidParams | None = None) -> np.ndarray:
    """Skin vertices (N, 3) in mm for the given lid state."""
    lids = lids or _LidParams()
    theta, phi = g.theta.copy(), g.phi.copy()
    mm_per_rad = AY_TOP * np.cos(g.eye_row_phi)
    # --- eye slits: open (neutral) and move the lids ---
    t, eye, inside = _eye_profile(theta, g.eye_row_phi)
    tt = np.clip(t * np.where(eye == 1, 1.0, -1.0), -1.0, 1.0)  # +1 toward the outer corner for both eyes
    bump = np.where(inside, np.clip(1.0 - tt**2, 0.0, 1.0), 0.0)
    up_open = EYE_UP * bump**0.75 * (1.0 + 0.12 * -tt)       # highest a little toward the nose
    lo_open = EYE_DOWN * bump**0.9 * (1.0 + 0.15 * tt)
    close_line = -0.35 * lo_open                              # where the lids meet on a blink
    upper_frac = np.asarray(lids.upper)[eye]
    lower_frac = np.asarray(lids.lower)[eye]
    up_pos = up_open + upper_frac * (close_line - up_open)    # mm above the row
    lo_pos = -lo_open + lower_frac * (close_line + lo_open)
    d_eye = (phi - g.eye_row_phi) * mm_per_rad
    fall_up = np.exp(-np.clip(d_eye, 0, None) / 7.5)
    fall_lo = np.exp(-np.clip(-d_eye, 0, None) / 6.0)
    dy = np.where(g.eye_side > 0, up_pos * fall_up, lo_pos * fall_lo)
    phi = phi + dy / mm_per_rad
    # --- mouth slit: a hairline gap between the lips ---
    xm = AX * np.sin(theta) * np.cos(g.mouth_row_phi) * _jaw_taper(np.array(MOUTH_Y))
    wm = np.clip(1.0 - (xm / MOUTH_HALF_W) ** 2, 0.0, 1.0) * (np.cos(theta) > 0)
    d_m = (phi - g.mouth_row_phi) * mm_per_rad
    gap = 0.6 * wm
    dym = np.where(g.mouth_side > 0, gap * np.exp(-np.clip(d_m, 0, None) / 4.0),
                   -gap * np.exp(-np.clip(-d_m, 0, None) / 4.0))
    phi = phi + dym / mm_per_rad

    # --- base head ---
    y = _base_y(phi)
    taper = _jaw_taper(y)
    cphi = np.cos(phi)
    az = np.where(np.cos(theta) >= 0, AZ_FRONT, AZ_BACK)
    x = AX * np.sin(theta) * cphi * taper
    z = az * np.cos(theta) * cphi
    front = _smoothstep(0.0, 0.55, np.cos(theta) * cphi)
    # flatten the face a little (faces are flatter than ellipsoids) and round the chin
    z = z - front * 10.0 * (np.abs(x) / AX) ** 2
    z = z - 14.0 * _smoothstep(-70.0, -118.0, y) * front       # chin underside recedes
    z = z + 4.0 * _smoothstep(-40.0, -118.0, y) * (np.cos(theta) < 0)  # little neck bulge at the back

    # --- facial features: displacement along z (the face is seen along z) ---
    side_sign = np.sign(x)
    ax_ = np.abs(x)
    disp = np.zeros_like(x)
    disp += 6.0 * _gauss(ax_, y, 27.0, 31.0, 22.0, 6.0)                      # brow ridge
    disp -= 9.0 * _gauss(ax_, y, EYE_X, EYE_Y, 14.0, 11.0)                   # eye sockets
    disp += 4.0 * _gauss(ax_, y, 40.0, -12.0, 16.0, 12.0)                    # cheek bones
    # nose: ridge + tip + wings
    ridge_t = np.clip((24.0 - y) / 46.0, 0.0, 1.0)                           # 0 at the brow, 1 at the tip
    ridge_w = 5.5 + 4.0 * ridge_t
    disp += (4.0 + 17.0 * ridge_t**1.5) * np.exp(-((x / ridge_w) ** 2)) * _smoothstep(-30.0, -18.0, y) * (
        y < 26.0) * 1.0 + 2.5 * np.exp(-((x / 8.0) ** 2)) * _gauss(0, y, 0, 24.0, 1, 6.0)
    disp += 6.0 * _gauss(x, y, 0.0, -20.5, 8.0, 6.5)                          # tip
    disp += 7.0 * _gauss(ax_, y, 11.0, -23.0, 6.0, 5.0)                       # wings (alae)
    disp -= 3.0 * _gauss(ax_, y, 17.0, -23.0, 4.0, 7.0)                       # nasolabial crease at the wing
    disp += 3.0 * _gauss(x, y, 0.0, -37.0, 6.0, 4.0)                          # philtrum
    # lips (upper and lower use their own sides of the slit)
    lip_w = np.clip(1.0 - (x / (MOUTH_HALF_W + 3.0)) ** 2, 0.0, 1.0) ** 0.6
    up_lip = 6.5 * lip_w * np.exp(-(((y - MOUTH_Y - 4.5) / 5.5) ** 2))
    lo_lip = 7.5 * lip_w * np.exp(-(((y - MOUTH_Y + 5.5) / 6.5) ** 2))
    disp += np.where(g.mouth_side > 0, up_lip, lo_lip)
    disp -= 2.5 * _gauss(ax_, y, MOUTH_HALF_W, MOUTH_Y, 4.0, 5.0)              # corners sink in
    disp -= 3.0 * _gauss(x, y, 0.0, MOUTH_Y - 16.0, 16.0, 4.0)                 # labiomental fold
    disp += 7.0 * _gauss(x, y, 0.0, -80.0, 14.0, 11.0)                         # chin
    disp -= 2.0 * _gauss(ax_, y, 52.0, -52.0, 14.0, 16.0)                      # below cheek
    z = z + disp * front

    # --- lids wrap around the eyeballs ---
    ex, ez = side_sign * EYE_X, _eye_centre_z()
    r2 = (x - ex) ** 2 + (y - EYE_Y) ** 2
    lid_z = ez + np.sqrt(np.clip((EYE_R + 1.2) ** 2 - r2, 0.0, None))
    near = (r2 < (EYE_R + 1.2) ** 2) & (np.cos(theta) > 0)
    z = np.where(near, np.maximum(z, lid_z), z)
    return np.stack([x, y, z], -1)


@functools.lru_cache(maxsize=1)
def _eye_centre_z() -> float:
    """Eyeball centre depth: its front sits a little behind the brow/cheek surface."""
    y = EYE_Y
    phi = np.arcsin(y / AY_TOP)
    theta = np.arcsin(EYE_X / (AX * np.cos(phi)))
    surface = AZ_FRONT * np.cos(theta) * np.cos(phi) - 10.0 * (EYE_X / AX) ** 2
    return float(surface - EYE_R + 2.0)


# ----------------------------------------------------------------------------------------------------------------
# other parts
def _sphere(n_lat: int, n_lon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit sphere with poles on +-Z: (verts, faces, polar angle from +Z)."""
    pol = np.linspace(0.0, np.pi, n_lat + 1)[1:-1]
    lon = np.linspace(0.0, 2 * np.pi, n_lon, endpoint=False)
    P, L = np.meshgrid(pol, lon, indexing="ij")
    v = np.stack([np.sin(P) * np.cos(L), np.sin(P) * np.sin(L), np.cos(P)], -1).reshape(-1, 3)
    v = np.concatenate([[[0, 0, 1]], v, [[0, 0, -1]]])
    ang = np.concatenate([[0.0], P.ravel(), [np.pi]])
    f = []
    idx = lambda i, j: 1 + i * n_lon + (j % n_lon)  # noqa: E731
    for j in range(n_lon):
        f.append((0, idx(0, j), idx(0, j + 1)))
        f.append((len(v) - 1, idx(n_lat - 2, j + 1), idx(n_lat - 2, j)))
    for i in range(n_lat - 2):
        for j in range(n_lon):
            a, b, c, d = idx(i, j), idx(i, j + 1), idx(i + 1, j + 1), idx(i + 1, j)
            f.append((a, d, c))
            f.append((a, c, b))
    return v.astype(np.float64), np.asarray(f, np.int32), ang


def _eyeball(sign: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # rings concentrated near the front so iris and pupil are round
    v, f, ang = _sphere(16, 24)
    # remap polar angles: more rings near the front
    new_ang = np.pi * (ang / np.pi) ** 1.6
    s = np.sin(new_ang) / np.maximum(np.sin(ang), 1e-9)
    v = np.stack([v[:, 0] * s, v[:, 1] * s, np.cos(new_ang)], -1)
    v[0] = (0, 0, 1)
    v[-1] = (0, 0, -1)
    col = np.empty((len(v), 3))
    deg = np.degrees(new_ang)
    col[:] = SCLERA
    iris_t = _smoothstep(28.0, 22.0, deg)[:, None]
    iris_col = np.array(IRIS) * (0.75 + 0.25 * _smoothstep(8.0, 22.0, deg))[:, None]
    col = col * (1 - iris_t) + iris_col * iris_t
    pup_t = _smoothstep(11.0, 8.0, deg)[:, None]
    col = col * (1 - pup_t) + np.array(PUPIL) * pup_t
    pos = v * EYE_R + np.array([sign * EYE_X, EYE_Y, _eye_centre_z()])
    return pos, f, col


def _teeth(upper: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A horseshoe band of teeth with a front, back and biting edge."""
    n = 15
    ang = np.linspace(-1.15, 1.15, n)
    r_front, r_back = 27.0, 22.0
    cz = _lip_front_z() - (6.0 if upper else 8.5) - r_front
    h = 9.0
    y_edge = MOUTH_Y + (-2.8 if upper else -0.8)
    y_root = y_edge + (h if upper else -h)
    rings = []
    for r, yy in ((r_front, y_root), (r_front, y_edge), (r_back, y_edge), (r_back, y_root)):
        rings.append(np.stack([r * np.sin(ang) * 0.92, np.full(n, yy), cz + r * np.cos(ang)], -1))
    v = np.concatenate(rings)
    f = []
    for ring in range(3):
        for i in range(n - 1):
            a, b = ring * n + i, ring * n + i + 1
            c, d = (ring + 1) * n + i + 1, (ring + 1) * n + i
            f += [(a, d, c), (a, c, b)] if upper else [(a, b, c), (a, c, d)]
    col = np.tile(np.array(TEETH, float), (len(v), 1))
    # gaps between teeth: darker every other vertex column on the biting edge; gums at the root
    shade = 1.0 - 0.10 * (np.arange(n) % 2)
    col[:n] = GUM
    col[n:2 * n] *= shade[:, None]
    col[3 * n:] = GUM
    return v, np.asarray(f, np.int32), col


@functools.lru_cache(maxsize=1)
def _lip_front_z() -> float:
    g = _build_grid()
    p = _skin_positions(g)
    m = np.abs(p[:, 0]) < 3.0
    m &= np.abs(p[:, 1] - MOUTH_Y) < 8.0
    return float(p[m, 2].max())


def _cavity() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v, f, _ = _sphere(12, 20)
    v = v * np.array([30.0, 24.0, 26.0]) + np.array([0.0, MOUTH_Y - 4.0, _lip_front_z() - 34.0])
    f = f[:, ::-1].copy()  # inside-out: seen from within
    depth = _smoothstep(10.0, -25.0, v[:, 2] - (_lip_front_z() - 34.0))[:, None]
    col = np.array(CAVITY) * (0.55 + 0.45 * (1 - depth))
    return v, f, col


def _neck() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An open cylinder under the skull (its top hidden inside the head)."""
    n, m = 28, 5
    a = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    ys = np.linspace(-62.0, -180.0, m)
    A, Y = np.meshgrid(a, ys, indexing="ij")
    v = np.stack([53.0 * np.sin(A), Y, -22.0 + 50.0 * np.cos(A)], -1).reshape(-1, 3)
    f = []
    for i in range(n):
        for j in range(m - 1):
            a0, a1 = i * m + j, ((i + 1) % n) * m + j
            f += [(a0, a0 + 1, a1 + 1), (a0, a1 + 1, a1)]
    col = np.tile(np.array(SKIN, float) * 0.93, (len(v), 1))
    return v, np.asarray(f, np.int32), col


def _ear(sign: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v, f, _ = _sphere(8, 12)
    v = v * np.array([6.0, 27.0, 15.0]) + np.array([sign * (AX - 2.0), 2.0, -4.0])
    col = np.tile(np.array(SKIN, float) * 0.97, (len(v), 1))
    return v, f, col


def _tongue() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v, f, _ = _sphere(10, 16)
    v = v * np.array([17.0, 6.0, 22.0]) + np.array([0.0, MOUTH_Y - 9.0, _lip_front_z() - 30.0])
    col = np.tile(np.array(TONGUE, float), (len(v), 1))
    return v, f, col


def _brow_strip(sign: float, skin: np.ndarray, skin_faces_normals: np.ndarray) -> tuple[np.ndarray, ...]:
    """A tapered brow strip hovering on the skin (its own geometry: crisp edges at any resolution)."""
    n = 14
    t = np.linspace(0.0, 1.0, n)
    x = 13.0 + 36.0 * t
    y_mid = 30.5 + 4.5 * np.sin(np.pi * (t * 0.85 + 0.05)) - 2.0 * t
    half = 2.6 * (1.0 - 0.55 * t) + 0.6 * np.sin(np.pi * t)
    top = np.stack([sign * x, y_mid + half], -1)
    bot = np.stack([sign * x, y_mid - half], -1)
    xy = np.concatenate([top, bot])
    # z from the nearest skin vertices (front), lifted along the normal
    front = skin[:, 2] > 0
    sk = skin[front]
    nr = skin_faces_normals[front]
    d = ((xy[:, None, :] - sk[None, :, :2]) ** 2).sum(-1)
    near = np.argsort(d, axis=1)[:, :4]
    w = 1.0 / (np.take_along_axis(d, near, 1) + 1e-3)
    w /= w.sum(1, keepdims=True)
    z = (sk[near, 2] * w).sum(1)
    nrm = (nr[near] * w[..., None]).sum(1)
    pos = np.concatenate([xy, z[:, None]], -1) + 0.9 * nrm
    f = []
    for i in range(n - 1):
        a, b, c, d_ = i, i + 1, n + i + 1, n + i
        f += [(a, d_, c), (a, c, b)] if sign > 0 else [(a, b, c), (a, c, d_)]
    col = np.tile(np.array(BROW, float), (len(pos), 1))
    return pos, np.asarray(f, np.int32), col


def _vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


# ----------------------------------------------------------------------------------------------------------------
@dataclass
class HeadRig:
    """The procedural head: neutral mesh, per-vertex colours, 52 ARKit morph targets and named vertex regions.

    Attributes:
        neutral: (V, 3) float32 rest positions in metres.
        faces: (F, 3) int32 triangles (counter-clockwise seen from outside).
        colors: (V, 4) uint8 RGBA per vertex.
        deltas: (52, V, 3) float32 morph targets in ``ARKIT_52`` order (shape - neutral).
        regions: vertex index arrays: "skin", "lips", "mouth", "jaw", "upper_face", "eyes", "eye_left",
            "eye_right", "teeth", "tongue", "brows".
    """

    neutral: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    deltas: np.ndarray
    regions: dict[str, np.ndarray] = field(default_factory=dict)
    names: tuple[str, ...] = ARKIT_52

    @property
    def num_vertices(self) -> int:
        return int(self.neutral.shape[0])

    def apply(self, weights: np.ndarray) -> np.ndarray:
        """Blend the morph targets: (T, 52) -> (T, V, 3) or (52,) -> (V, 3); neutral + sum_k w_k delta_k."""
        w = np.asarray(weights, dtype=np.float32)
        if w.shape[-1] != len(self.names):
            raise RenderError(f"weights have {w.shape[-1]} channels; the head needs {len(self.names)} (ARKit-52)")
        single = w.ndim == 1
        w2 = w.reshape(-1, w.shape[-1])  # (T, 52)
        flat = self.deltas.reshape(len(self.names), -1)  # (52, V*3)
        out = (w2 @ flat).reshape(-1, self.num_vertices, 3) + self.neutral[None]  # (T, V, 3)
        return out[0] if single else out


def _build() -> HeadRig:
    g = _build_grid()
    skin = _skin_positions(g)
    n_skin = len(skin)
    skin_faces = g.faces
    skin_nrm = _vertex_normals(skin, skin_faces)
    x, y, z = skin.T

    # ---- skin colours ----
    col = np.tile(np.array(SKIN, float), (n_skin, 1))
    front = np.cos(g.theta) * np.cos(g.phi)
    # lips: by distance from the slit on each side, with a cupid's bow on the upper lip
    ax_ = np.abs(x)
    lip_half = MOUTH_HALF_W + 1.5
    width_ok = np.clip(1.0 - (x / lip_half) ** 2, 0.0, 1.0)
    up_h = (7.0 - 1.5 * np.exp(-((x / 2.5) ** 2)) + 0.8 * np.exp(-(((ax_ - 6.0) / 3.0) ** 2))) * width_ok**0.7
    lo_h = 9.5 * width_ok**0.8
    dist = np.abs(y - MOUTH_Y)
    lip_t = np.where(g.mouth_side > 0, _smoothstep(up_h + 0.3, up_h - 1.2, dist),
                     _smoothstep(lo_h + 0.3, lo_h - 1.5, dist)) * (front > 0.3) * (width_ok > 0)
    col = col * (1 - lip_t[:, None]) + np.array(LIP) * lip_t[:, None]
    # hair: a cap over the top and back of the skull
    hairline = 58.0 + 12.0 * (ax_ / AX) ** 2 - 70.0 * _smoothstep(0.35, -0.4, front)
    hair_t = _smoothstep(hairline - 1.0, hairline + 3.0, y) * (y > -40.0)
    col = col * (1 - hair_t[:, None]) + np.array(HAIR) * hair_t[:, None]
    # lash line on the upper lid margin, a touch of pink on the lower one
    col[g.upper_lid] = LASH
    col[g.lower_lid] = (0.6 * np.array(SKIN) + 0.4 * np.array(LIP))
    # nostrils
    nost = 0.85 * _gauss(ax_, y, 6.0, -25.5, 3.0, 2.2) * (front > 0.5)
    col = col * (1 - nost[:, None]) + np.array((70, 38, 34)) * nost[:, None]
    # cheeks a little warmer
    blush = 0.25 * _gauss(ax_, y, 42.0, -20.0, 14.0, 12.0) * (front > 0)
    col = col * (1 - blush[:, None]) + np.array((214, 128, 118)) * blush[:, None]

    parts = [("skin", skin, skin_faces, col)]
    eye_r = _eyeball(-1.0)
    eye_l = _eyeball(+1.0)
    parts += [("eye_right", *eye_r), ("eye_left", *eye_l)]
    parts += [("cavity", *_cavity()), ("teeth_upper", *_teeth(True)), ("teeth_lower", *_teeth(False)),
              ("tongue", *_tongue())]
    parts += [("neck", *_neck()), ("ear_right", *_ear(-1.0)), ("ear_left", *_ear(1.0))]
    parts += [("brow_right", *_brow_strip(-1.0, skin, skin_nrm)), ("brow_left", *_brow_strip(1.0, skin, skin_nrm))]

    verts, faces, cols, part_of = [], [], [], {}
    off = 0
    for name, v, f, c in parts:
        verts.append(v)
        faces.append(f + off)
        cols.append(c)
        part_of[name] = np.arange(off, off + len(v))
        off += len(v)
    V = np.concatenate(verts)
    F = np.concatenate(faces).astype(np.int32)
    C = np.concatenate(cols)
    part = np.empty(len(V), dtype=object)
    for name, idx in part_of.items():
        part[idx] = name
    is_skin = part == "skin"
    is_eye = (part == "eye_left") | (part == "eye_right")
    is_brow = (part == "brow_left") | (part == "brow_right")
    mouth_side = np.zeros(len(V))
    mouth_side[:n_skin] = g.mouth_side

    deltas = _shape_deltas(g, V, part, is_skin, is_eye, is_brow, mouth_side, n_skin)

    # ---- regions ----
    X, Y, Z = V.T
    jaw_w = _jaw_weight(V, part, mouth_side)
    regions = {
        "skin": np.where(is_skin)[0],
        "lips": np.where(is_skin)[0][lip_t > 0.5],
        "mouth": np.where((is_skin & (np.abs(X) < 38) & (np.abs(Y - MOUTH_Y) < 22) & (Z > 0))
                          | np.isin(part, ["teeth_upper", "teeth_lower", "tongue"]))[0],
        "jaw": np.where(jaw_w > 0.5)[0],
        "upper_face": np.where((is_skin | is_brow | is_eye) & (Y > EYE_Y - 16) & (Z > 0))[0],
        "eyes": np.where(is_eye)[0],
        "eye_left": part_of["eye_left"],
        "eye_right": part_of["eye_right"],
        "teeth": np.concatenate([part_of["teeth_upper"], part_of["teeth_lower"]]),
        "tongue": part_of["tongue"],
        "brows": np.where(is_brow)[0],
    }
    rgba = np.concatenate([np.clip(C, 0, 255), np.full((len(C), 1), 255.0)], 1).astype(np.uint8)
    return HeadRig(neutral=(V * MM).astype(np.float32), faces=F, colors=rgba,
                   deltas=(deltas * MM).astype(np.float32),
                   regions={k: np.asarray(v, np.int32) for k, v in regions.items()})


def _jaw_weight(V: np.ndarray, part: np.ndarray, mouth_side: np.ndarray) -> np.ndarray:
    """How much each vertex follows the jaw (0..1)."""
    X, Y, Z = V.T
    ax_ = np.abs(X)
    # the jaw line rises from the mouth corners toward the hinge in front of the ears
    line = MOUTH_Y + 0.55 * np.clip(ax_ - MOUTH_HALF_W * 0.7, 0.0, None)
    band = 3.0 + 0.35 * np.clip(ax_ - 10.0, 0.0, None)
    w = _smoothstep(-0.5, band, line - Y)
    lip_window = np.clip(1.0 - (X / (MOUTH_HALF_W * 1.02)) ** 2, 0.0, 1.0) ** 0.5
    w = np.where(mouth_side < 0, np.maximum(w, lip_window), w)
    w = w * _smoothstep(-30.0, 30.0, Z)  # the neck and the back of the head stay
    w[part == "skin"] *= 1.0
    w[np.isin(part, ["teeth_lower", "tongue"])] = 1.0
    w[np.isin(part, ["teeth_upper", "eye_left", "eye_right", "brow_left", "brow_right", "neck", "ear_left",
                     "ear_right"])] = 0.0
    cav = part == "cavity"
    w[cav] = _smoothstep(MOUTH_Y + 8.0, MOUTH_Y - 12.0, Y[cav])
    return w


def _shape_deltas(g: _Grid, V: np.ndarray, part: np.ndarray, is_skin: np.ndarray, is_eye: np.ndarray,
                  is_brow: np.ndarray, mouth_side: np.ndarray, n_skin: int) -> np.ndarray:
    """(52, V, 3) displacement fields in mm, one per ARKit shape."""
    X, Y, Z = V.T
    n = len(V)
    D = {name: np.zeros((n, 3)) for name in ARKIT_52}
    face = (is_skin | is_brow) & (Z > 0)
    facef = face.astype(float)
    ax_ = np.abs(X)
    jaw_w = _jaw_weight(V, part, mouth_side)
    lip_window = np.clip(1.0 - (X / (MOUTH_HALF_W * 1.05)) ** 2, 0.0, 1.0)
    near_mouth = _gauss(X, Y, 0.0, MOUTH_Y, 30.0, 14.0) * facef
    upper_lip = near_mouth * (mouth_side > 0) * _gauss(0, Y, 0, MOUTH_Y + 4.0, 1, 8.0) * lip_window**0.5
    lower_lip = near_mouth * (mouth_side < 0) * _gauss(0, Y, 0, MOUTH_Y - 4.0, 1, 9.0) * lip_window**0.5
    inner = (part == "tongue") | (part == "cavity") | (part == "teeth_lower") | (part == "teeth_upper")

    def side_mask(sign: float) -> np.ndarray:
        return _smoothstep(-6.0, 10.0, sign * X)

    # ---- lids (skin rebuilt with lid parameters) ----
    base = _skin_positions(g)

    def lids(upper=(0.0, 0.0), lower=(0.0, 0.0)) -> np.ndarray:
        out = np.zeros((n, 3))
        out[:n_skin] = _skin_positions(g, _LidParams(upper, lower)) - base
        return out

    for s, side in ((1, "Left"), (0, "Right")):
        def pair(v: float, s=s) -> tuple[float, float]:
            return (v, 0.0) if s == 0 else (0.0, v)
        D[f"eyeBlink{side}"] += lids(upper=pair(1.0), lower=pair(1.0))
        D[f"eyeLookDown{side}"] += lids(upper=pair(0.35), lower=pair(-0.15))
        D[f"eyeLookUp{side}"] += lids(upper=pair(-0.3), lower=pair(-0.1))
        D[f"eyeSquint{side}"] += lids(upper=pair(0.15), lower=pair(0.55))
        D[f"eyeWide{side}"] += lids(upper=pair(-0.55), lower=pair(-0.2))
        D[f"cheekSquint{side}"] += lids(lower=pair(0.45))

    # ---- eyeball rotations ----
    ez = _eye_centre_z()
    for sign, side in ((1.0, "Left"), (-1.0, "Right")):
        m = part == ("eye_left" if sign > 0 else "eye_right")
        c = np.array([sign * EYE_X, EYE_Y, ez])
        p = V[m] - c

        def rot(R: np.ndarray, p=p) -> np.ndarray:
            return p @ R.T - p

        yaw = np.radians(28.0)
        pitch = np.radians(22.0)
        # rotation about +Y by +a turns +Z toward +X (the subject's left)
        look_left = rot(_rot_y(np.array(yaw)))
        look_right = rot(_rot_y(np.array(-yaw)))
        D[f"eyeLookUp{side}"][m] += rot(_rot_x(np.array(-pitch)))
        D[f"eyeLookDown{side}"][m] += rot(_rot_x(np.array(pitch)))
        # "In" = toward the nose; for the left eye (+X) that is -X
        D[f"eyeLookIn{side}"][m] += look_right if sign > 0 else look_left
        D[f"eyeLookOut{side}"][m] += look_left if sign > 0 else look_right

    # ---- brows / upper face ----
    for sign, side in ((1.0, "Left"), (-1.0, "Right")):
        sm = side_mask(sign)
        brow_zone = _gauss(ax_, Y, 30.0, 32.0, 22.0, 12.0) * facef * sm
        D[f"browDown{side}"] += brow_zone[:, None] * np.array([0.0, -6.0, 1.0])
        D[f"browDown{side}"][:, 0] += -sign * 3.0 * brow_zone
        outer = _gauss(ax_, Y, 45.0, 32.0, 14.0, 12.0) * facef * sm
        D[f"browOuterUp{side}"] += outer[:, None] * np.array([0.0, 8.0, 0.0])
        D[f"eyeWide{side}"] += (0.35 * brow_zone)[:, None] * np.array([0.0, 4.0, 0.0])
        D[f"eyeSquint{side}"] += (_gauss(ax_, Y, 36.0, -4.0, 16.0, 9.0) * facef * sm)[:, None] * np.array(
            [0.0, 3.0, 1.5])
        cheek = _gauss(ax_, Y, 38.0, -16.0, 17.0, 13.0) * facef * sm
        D[f"cheekSquint{side}"] += cheek[:, None] * np.array([0.0, 5.0, 2.0])
        sneer = _gauss(ax_, Y, 11.0, -17.0, 7.0, 10.0) * facef * sm
        D[f"noseSneer{side}"] += sneer[:, None] * np.array([0.0, 5.0, 1.0])
        D[f"noseSneer{side}"][:, 0] += sign * 1.5 * sneer
        D[f"noseSneer{side}"] += (0.6 * _gauss(ax_, Y, 16.0, -36.0, 8.0, 6.0) * facef * sm * (mouth_side > 0))[
            :, None] * np.array([0.0, 3.0, 0.0])
    inner_brow = _gauss(ax_, Y, 15.0, 33.0, 12.0, 14.0) * facef
    D["browInnerUp"] += inner_brow[:, None] * np.array([0.0, 8.0, 0.5])

    # ---- jaw ----
    rel = V - JAW_PIVOT
    ang = np.radians(21.0) * jaw_w
    R = _rot_x(ang)  # positive angle about +X tips the chin down (y toward -z... +z toward -y)
    D["jawOpen"] += np.einsum("nij,nj->ni", R, rel) - rel
    D["jawForward"] += jaw_w[:, None] * np.array([0.0, 0.0, 7.0])
    D["jawLeft"] += jaw_w[:, None] * np.array([8.0, 0.0, 0.0])
    D["jawRight"] += jaw_w[:, None] * np.array([-8.0, 0.0, 0.0])

    # ---- mouth ----
    lips_all = (upper_lip + lower_lip)
    D["mouthClose"] += -(D["jawOpen"] * (lower_lip * 1.0)[:, None]) * 0.9
    D["mouthClose"] += (upper_lip[:, None] * np.array([0.0, -1.5, 0.5]))
    # funnel: lips flare forward into an open "O"
    D["mouthFunnel"] += lips_all[:, None] * np.array([0.0, 0.0, 6.0])
    D["mouthFunnel"][:, 0] += -0.25 * X * near_mouth * _smoothstep(6.0, 20.0, ax_)
    D["mouthFunnel"][:, 1] += 4.0 * upper_lip - 5.0 * lower_lip
    # pucker: narrow, pushed forward, closed
    D["mouthPucker"][:, 0] += -0.38 * X * near_mouth
    D["mouthPucker"] += (near_mouth * 0.4 + lips_all)[:, None] * np.array([0.0, 0.0, 8.0])
    D["mouthLeft"] += (near_mouth * 1.2).clip(0, 1)[:, None] * np.array([9.0, 0.0, 0.0])
    D["mouthRight"] += (near_mouth * 1.2).clip(0, 1)[:, None] * np.array([-9.0, 0.0, 0.0])
    for sign, side in ((1.0, "Left"), (-1.0, "Right")):
        sm = side_mask(sign)
        corner = _gauss(X, Y, sign * MOUTH_HALF_W, MOUTH_Y, 11.0, 10.0) * facef
        D[f"mouthSmile{side}"] += corner[:, None] * np.array([sign * 5.0, 7.0, -3.0])
        D[f"mouthSmile{side}"] += (_gauss(ax_, Y, 38.0, -22.0, 14.0, 12.0) * facef * sm)[:, None] * np.array(
            [0.0, 2.5, 2.0])
        D[f"mouthFrown{side}"] += corner[:, None] * np.array([sign * 1.0, -7.0, -1.0])
        D[f"mouthDimple{side}"] += corner[:, None] * np.array([sign * 4.0, 0.0, -5.0])
        D[f"mouthStretch{side}"] += corner[:, None] * np.array([sign * 7.0, -4.0, -2.0])
        D[f"mouthStretch{side}"] += (lower_lip * sm * 0.6)[:, None] * np.array([sign * 3.0, -2.0, 0.0])
        D[f"mouthPress{side}"][:, 1] += (-0.6 * (Y - MOUTH_Y)) * (upper_lip + lower_lip) * sm
        D[f"mouthPress{side}"] += (lips_all * sm)[:, None] * np.array([sign * 3.0, 0.0, -4.0])
        D[f"mouthLowerDown{side}"] += (lower_lip * sm)[:, None] * np.array([0.0, -7.0, 0.5])
        D[f"mouthUpperUp{side}"] += (upper_lip * sm)[:, None] * np.array([0.0, 6.0, 1.0])
    D["mouthRollLower"] += lower_lip[:, None] * np.array([0.0, 3.0, -6.0])
    D["mouthRollUpper"] += upper_lip[:, None] * np.array([0.0, -3.0, -6.0])
    chin = _gauss(X, Y, 0.0, -78.0, 18.0, 14.0) * facef
    D["mouthShrugLower"] += (lower_lip + chin)[:, None] * np.array([0.0, 4.0, 3.0])
    D["mouthShrugUpper"] += upper_lip[:, None] * np.array([0.0, 5.0, 4.0])
    cheeks = (_gauss(ax_, Y, 40.0, -40.0, 16.0, 16.0) * facef)
    nrm_xz = np.stack([np.sign(X) * 0.9, np.zeros(n), np.full(n, 0.45)], -1)
    D["cheekPuff"] += cheeks[:, None] * nrm_xz * 9.0
    D["cheekPuff"] += (lips_all * 0.5)[:, None] * np.array([0.0, 0.0, 2.0])
    # tongue out: forward through the lips, which part a little
    D["tongueOut"][part == "tongue"] += np.array([0.0, 1.0, 24.0])
    D["tongueOut"] += lower_lip[:, None] * np.array([0.0, -5.0, 1.0])
    D["tongueOut"] += upper_lip[:, None] * np.array([0.0, 1.5, 0.0])

    # eyes and teeth are rigid: only the eye shapes above move the eyeballs, only the jaw moves the teeth
    for name in ARKIT_52:
        if not (name.startswith("eyeLook")):
            D[name][is_eye] = 0.0
        if not name.startswith("jaw") and name not in ("tongueOut",):
            D[name][inner & (part != "tongue")] = 0.0
            if name != "tongueOut":
                D[name][part == "tongue"] = 0.0
    return np.stack([D[name] for name in ARKIT_52])


# ----------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def load_head() -> HeadRig:
    """The procedural head, built once per process (~0.2 s, deterministic: no disk cache is needed)."""
    return _build()


def build_head() -> HeadRig:
    """Build the head from scratch (no cache)."""
    return _build()


def contact_sheet(out: str | os.PathLike, size: int = 192, cols: int = 8) -> Path:
    """Render all 52 ARKit shapes at weight 1 (plus the neutral) into one labelled grid PNG."""
    from PIL import Image, ImageDraw

    from diffusiontalker.render.renderer import Renderer
    from diffusiontalker.render.video import label_font

    rig = load_head()
    names = ("neutral",) + ARKIT_52
    weights = np.zeros((len(names), len(ARKIT_52)), np.float32)
    for i in range(1, len(names)):
        weights[i, i - 1] = 1.0
    verts = rig.apply(weights)  # (53, V, 3)
    face_idx = np.concatenate([rig.regions["skin"], rig.regions["eyes"]])
    lo, hi = rig.neutral[face_idx].min(0), rig.neutral[face_idx].max(0)
    # frame the face (crop the top of the skull a little)
    bounds = np.array([[lo[0], lo[1], lo[2]], [hi[0], hi[1] - 0.03, hi[2]]], np.float32)
    rows = (len(names) + cols - 1) // cols
    label_h = max(14, size // 10)
    sheet = Image.new("RGB", (cols * size, rows * (size + label_h)), (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    font = label_font(max(10, size // 14))
    r = Renderer(rig.faces, rig.colors, size=size, bounds_vertices=bounds, samples=4)
    try:
        for i, name in enumerate(names):
            img = r.render(verts[i])
            cx, cy = (i % cols) * size, (i // cols) * (size + label_h)
            sheet.paste(Image.fromarray(img), (cx, cy + label_h))
            tw = draw.textlength(name, font=font)
            draw.text((cx + (size - tw) / 2, cy + 1), name, fill=(20, 20, 20), font=font)
    finally:
        r.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
