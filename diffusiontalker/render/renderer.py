"""Offscreen mesh rendering with pyrender: the scene is built once, only vertex positions change per frame.

Backend: ``PYOPENGL_PLATFORM`` if set, else EGL, then OSMesa (the variable must be set before OpenGL is imported,
so the choice happens on first use, in :func:`_import_pyrender`).

Per-frame work (measured on the 2-core CPU, llvmpipe, 512², ~7k vertices): computing normals, one
``glBufferSubData`` into the existing interleaved vertex buffer (positions, normals, colours — pyrender's layout),
drawing, and reading back colour only (pyrender also reads and linearises depth, which we skip).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

import numpy as np

from diffusiontalker.errors import RenderError

_APT_HINT = "install the system OpenGL libraries: sudo apt-get install libegl1 libgl1-mesa-dri libegl-mesa0 libosmesa6"
_PYRENDER = None


def _import_pyrender():
    """Import pyrender with a working headless backend (egl, then osmesa), once per process."""
    global _PYRENDER
    if _PYRENDER is not None:
        return _PYRENDER
    if not hasattr(np, "infty"):  # pyrender 0.1.45 still uses np.infty (removed in numpy 2)
        np.infty = np.inf
    requested = os.environ.get("PYOPENGL_PLATFORM")
    candidates = [requested] if requested else ["egl", "osmesa"]
    errors = []
    for platform in candidates:
        os.environ["PYOPENGL_PLATFORM"] = platform
        try:
            import pyrender

            r = pyrender.OffscreenRenderer(8, 8)  # proves a context can be created
            r.delete()
            _PYRENDER = pyrender
            return pyrender
        except Exception as e:  # noqa: BLE001 - any failure means "try the next backend"
            errors.append(f"{platform}: {type(e).__name__}: {e}")
            # OpenGL binds its platform at import time: a second backend needs a fresh import
            import sys

            for mod in [m for m in sys.modules if m == "OpenGL" or m.startswith(("OpenGL.", "pyrender"))]:
                del sys.modules[mod]
    if not requested:
        os.environ.pop("PYOPENGL_PLATFORM", None)
    raise RenderError(f"no offscreen OpenGL backend could start ({'; '.join(errors)}); {_APT_HINT}; "
                      f"or set PYOPENGL_PLATFORM=egl|osmesa")


def vertex_normals(vertices: np.ndarray, faces: np.ndarray, incidence=None) -> np.ndarray:
    """Area-weighted unit vertex normals (V, 3); ``incidence`` is an optional (V, F) sparse matrix for speed."""
    v = np.asarray(vertices, np.float32)
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])  # (F, 3)
    if incidence is not None:
        n = incidence @ fn
    else:
        n = np.zeros_like(v)
        for k in range(3):
            np.add.at(n, faces[:, k], fn)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return n.astype(np.float32)


def _incidence(faces: np.ndarray, num_vertices: int):
    import scipy.sparse as sp

    rows = faces.reshape(-1)
    cols = np.repeat(np.arange(len(faces)), 3)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(num_vertices, len(faces)))


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """4x4 camera pose (OpenGL convention: the camera looks down its -Z)."""
    eye, target, up = (np.asarray(a, np.float64) for a in (eye, target, up))
    f = target - eye
    f /= np.linalg.norm(f)
    s = np.cross(f, up)
    s /= np.linalg.norm(s)
    u = np.cross(s, f)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = s, u, -f, eye
    return pose


class Renderer:
    """Renders one mesh topology from a fixed front camera.

    Args:
        faces: (F, 3) triangle indices.
        colors: (V, 3|4) uint8 or float per-vertex colours; a neutral skin grey when None.
        size: output width and height in pixels.
        bounds_vertices: vertices whose bounding box frames the camera (e.g. the neutral mesh); when None the
            first rendered frame frames it.
        background: RGB of the background.
        samples: MSAA samples (0 = off). 4x MSAA doubles the llvmpipe draw cost at 512² for barely visible gain
            on this smooth mesh, so video uses 0; stills (the contact sheet) use 4.
        internal_size: render at this size and upscale bilinearly to ``size`` (faster, softer); default ``size``.
    """

    def __init__(self, faces: np.ndarray, colors: np.ndarray | None = None, size: int = 512,
                 bounds_vertices: np.ndarray | None = None, background=(38, 40, 46), samples: int = 0,
                 internal_size: int | None = None) -> None:
        self.faces = np.ascontiguousarray(np.asarray(faces, np.int32))
        if self.faces.ndim != 2 or self.faces.shape[1] != 3 or len(self.faces) == 0:
            raise RenderError(f"faces must be a non-empty (F, 3) int array, got shape {self.faces.shape}")
        self.size = int(size)
        if not 16 <= self.size <= 4096:
            raise RenderError(f"render size {size} is out of range; use 16..4096 pixels")
        self.num_vertices = int(self.faces.max()) + 1
        if colors is None:
            col = np.tile(np.array([[0.78, 0.72, 0.68, 1.0]], np.float32), (self.num_vertices, 1))
        else:
            col = np.asarray(colors)
            col = col.astype(np.float32) / 255.0 if col.dtype == np.uint8 or col.max() > 1.0 else col.astype(
                np.float32)
            if col.shape[1] == 3:
                col = np.concatenate([col, np.ones((len(col), 1), np.float32)], 1)
            if len(col) < self.num_vertices:
                raise RenderError(f"{len(col)} colours for {self.num_vertices} vertices")
        self.colors = np.ascontiguousarray(col[: max(self.num_vertices, len(col))])
        self.background = np.asarray(background, np.float32) / 255.0
        self.samples = int(samples)
        self.internal_size = int(internal_size or self.size)
        self._incidence = None
        self._bounds = None if bounds_vertices is None else np.asarray(bounds_vertices, np.float32)
        self._scene = None
        self._renderer = None
        self._primitive = None
        self._interleaved = None

    # ---- scene set-up (once) ----
    def _setup(self, vertices: np.ndarray) -> None:
        pyrender = _import_pyrender()
        V = len(vertices)
        if len(self.colors) < V:
            raise RenderError(f"mesh has {V} vertices but {len(self.colors)} colours")
        self.colors = self.colors[:V]
        self._incidence = _incidence(self.faces, V)
        normals = vertex_normals(vertices, self.faces, self._incidence)
        material = pyrender.MetallicRoughnessMaterial(baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0,
                                                      roughnessFactor=0.62, doubleSided=False)
        self._primitive = pyrender.Primitive(positions=vertices, normals=normals, color_0=self.colors,
                                             indices=self.faces, material=material, mode=4)
        mesh = pyrender.Mesh([self._primitive])
        scene = pyrender.Scene(bg_color=np.append(self.background, 1.0), ambient_light=[0.10, 0.10, 0.11])
        scene.add(mesh)
        b = self._bounds if self._bounds is not None else vertices
        lo, hi = b.min(0), b.max(0)
        centre = (lo + hi) / 2.0
        extent = float(max(hi[0] - lo[0], hi[1] - lo[1])) * 1.12
        yfov = np.radians(24.0)
        dist = extent / 2.0 / np.tan(yfov / 2.0) + float(hi[2] - centre[2])
        eye = centre + np.array([0.0, 0.0, dist])
        cam = pyrender.PerspectiveCamera(yfov=yfov, znear=max(dist * 0.05, 1e-4), zfar=dist * 4.0)
        scene.add(cam, pose=look_at(eye, centre))
        # soft three-point lighting: key (upper left of the viewer), fill (right, dimmer), rim (behind, above)
        for direction, intensity, color in (((-0.6, 0.5, 1.0), 2.1, (1.0, 0.96, 0.9)),
                                            ((0.75, 0.05, 0.8), 0.8, (0.88, 0.92, 1.0)),
                                            ((0.0, 0.8, -1.0), 1.6, (1.0, 1.0, 1.0)),
                                            ((0.0, -0.6, 1.0), 0.3, (1.0, 0.95, 0.95))):
            light = pyrender.DirectionalLight(color=np.array(color), intensity=intensity)
            scene.add(light, pose=look_at(centre + np.array(direction) * dist, centre))
        self._scene = scene
        try:
            self._renderer = pyrender.OffscreenRenderer(self.internal_size, self.internal_size)
        except Exception as e:  # noqa: BLE001
            raise RenderError(f"could not create a {self.size}x{self.size} offscreen renderer: {e}; {_APT_HINT}") from e
        self._interleaved = np.empty((V, 10), np.float32)
        self._interleaved[:, 6:] = self.colors
        # first draw creates the framebuffers (with our MSAA sample count) and uploads the buffers
        import pyrender.renderer as prr

        original = prr.glRenderbufferStorageMultisample
        prr.glRenderbufferStorageMultisample = lambda target, _s, fmt, w, h: original(target, self.samples, fmt, w, h)
        try:
            self._render_gl()
        finally:
            prr.glRenderbufferStorageMultisample = original

    def _render_gl(self) -> np.ndarray:
        """Draw and read back colour only (skips pyrender's depth read-back and linearisation)."""
        from OpenGL import GL

        r = self._renderer
        inner = r._renderer
        pyrender = _import_pyrender()

        def read_color_only(scene, flags, _inner=inner):
            w, h = _inner._main_fb_dims
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, _inner._main_fb_ms)
            GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, _inner._main_fb)
            GL.glBlitFramebuffer(0, 0, w, h, 0, 0, w, h, GL.GL_COLOR_BUFFER_BIT, GL.GL_LINEAR)
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, _inner._main_fb)
            GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
            buf = GL.glReadPixels(0, 0, w, h, GL.GL_RGB, GL.GL_UNSIGNED_BYTE)
            img = np.frombuffer(buf, np.uint8).reshape(h, w, 3)[::-1]
            return img, None

        if not getattr(inner, "_dt_fast", False) and hasattr(inner, "_read_main_framebuffer"):
            inner._read_main_framebuffer = read_color_only
            inner._dt_fast = True
        color, _ = r.render(self._scene, flags=pyrender.RenderFlags.NONE)
        if self.internal_size != self.size:
            from PIL import Image

            color = np.asarray(Image.fromarray(color).resize((self.size, self.size), Image.BILINEAR))
        return np.ascontiguousarray(color)

    def _upload(self, vertices: np.ndarray) -> None:
        """Overwrite positions and normals in the primitive's existing vertex buffer (no re-allocation)."""
        from OpenGL import GL

        normals = vertex_normals(vertices, self.faces, self._incidence)
        buf = self._interleaved
        buf[:, 0:3] = vertices
        buf[:, 3:6] = normals
        self._renderer._platform.make_current()
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self._primitive._buffers[0])
        GL.glBufferSubData(GL.GL_ARRAY_BUFFER, 0, buf.nbytes, ctypes.c_void_p(buf.ctypes.data))
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)

    # ---- public API ----
    def render(self, vertices: np.ndarray) -> np.ndarray:
        """One frame: (V, 3) vertex positions -> (H, W, 3) uint8 RGB (C-contiguous)."""
        v = np.ascontiguousarray(np.asarray(vertices, np.float32))
        if v.ndim != 2 or v.shape[1] != 3:
            raise RenderError(f"vertices must be (V, 3), got {v.shape}")
        if v.shape[0] < self.num_vertices:
            raise RenderError(f"mesh faces index {self.num_vertices} vertices but {v.shape[0]} were given")
        if not np.all(np.isfinite(v)):
            raise RenderError("vertices contain NaN or infinite values; the animation is invalid")
        if self._scene is None:
            self._setup(v)
            return self._render_gl()
        if v.shape[0] != len(self._interleaved):
            raise RenderError(f"vertex count changed from {len(self._interleaved)} to {v.shape[0]}")
        self._upload(v)
        return self._render_gl()

    def render_sequence(self, vertices: np.ndarray) -> Iterator[np.ndarray]:
        """Frames for a (T, V, 3) sequence, lazily."""
        for frame in vertices:
            yield self.render(frame)

    def close(self) -> None:
        """Free the OpenGL context."""
        if self._renderer is not None:
            with contextlib.suppress(Exception):  # best effort at teardown
                self._renderer.delete()
            self._renderer = None
            self._scene = None

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - GC timing
        with contextlib.suppress(Exception):
            self.close()
