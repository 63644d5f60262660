"""Frames -> browser-playable mp4 (H.264 yuv420p + AAC, +faststart), grids of labelled tiles, probing, templates."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from diffusiontalker.animation import Animation
from diffusiontalker.audio import SAMPLE_RATE, save_wav
from diffusiontalker.errors import RenderError

_FONT_CANDIDATES = ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf")


def label_font(px: int):
    """A TrueType font of ``px`` pixels if one is installed, else Pillow's built-in bitmap font."""
    from PIL import ImageFont

    for cand in _FONT_CANDIDATES:
        try:
            return ImageFont.truetype(cand, px)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _ffmpeg() -> str:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # noqa: BLE001
        raise RenderError(f"imageio-ffmpeg is needed to write video ({e}); pip install imageio-ffmpeg") from e


def write_video(frames: Iterable[np.ndarray], out: str | os.PathLike, fps: float, audio: np.ndarray | None = None,
                sample_rate: int = SAMPLE_RATE, crf: int = 20) -> Path:
    """Encode RGB frames (H, W, 3) uint8 as H.264 yuv420p (+ AAC audio when given) with ``+faststart``.

    Written to a temporary name beside ``out`` and renamed, so a reader never sees a half-written file.
    Frame sizes must be even (yuv420p); odd sizes are padded by one pixel.
    """
    import imageio_ffmpeg

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    it: Iterator[np.ndarray] = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        raise RenderError("no frames to encode; the animation is empty") from None
    first = np.asarray(first)
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise RenderError(f"frames must be (H, W, 3) uint8, got {first.shape} {first.dtype}")
    h, w = first.shape[:2]
    ph, pw = h + h % 2, w + w % 2
    tmp_dir = tempfile.mkdtemp(prefix="dt_video_", dir=str(out.parent))
    tmp_mp4 = Path(tmp_dir) / ("partial" + out.suffix if out.suffix else "partial.mp4")
    wav = None
    try:
        if audio is not None and len(audio) > 0:
            wav = Path(tmp_dir) / "audio.wav"
            save_wav(wav, np.asarray(audio, np.float32), sample_rate)
        kwargs = dict(codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p", quality=None,
                      macro_block_size=1, ffmpeg_log_level="error",
                      output_params=["-crf", str(crf), "-preset", "veryfast", "-movflags", "+faststart"])
        if wav is not None:
            kwargs.update(audio_path=str(wav), audio_codec="aac")
        writer = imageio_ffmpeg.write_frames(str(tmp_mp4), (pw, ph), fps=float(fps), **kwargs)
        writer.send(None)

        def padded(f: np.ndarray) -> np.ndarray:
            f = np.asarray(f, np.uint8)
            if f.shape[:2] != (h, w):
                raise RenderError(f"frame size changed from {(h, w)} to {f.shape[:2]}")
            if (ph, pw) != (h, w):
                f = np.pad(f, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
            return np.ascontiguousarray(f)

        writer.send(padded(first))
        for f in it:
            writer.send(padded(f))
        writer.close()
        os.replace(tmp_mp4, out)
    except RenderError:
        raise
    except Exception as e:  # noqa: BLE001
        raise RenderError(f"video encoding failed for {out.name}: {e}") from e
    finally:
        for p in Path(tmp_dir).glob("*"):
            p.unlink(missing_ok=True)
        os.rmdir(tmp_dir)
    return out


def probe(path: str | os.PathLike) -> dict:
    """Stream facts from ``ffmpeg -i`` (imageio-ffmpeg's binary): codecs, duration (s), size and fps."""
    path = Path(path)
    if not path.exists():
        raise RenderError(f"no such video: {path}")
    proc = subprocess.run([_ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, text=True, timeout=60)
    err = proc.stderr
    info: dict = {"video_codec": None, "audio_codec": None, "duration": None, "width": None, "height": None,
                  "fps": None}
    m = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", err)
    if m:
        info["duration"] = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    m = re.search(r"Stream #\S+.*?: Video: (\w+).*?, (\d{2,5})x(\d{2,5})", err)
    if m:
        info["video_codec"], info["width"], info["height"] = m.group(1), int(m.group(2)), int(m.group(3))
    m = re.search(r"Video:.*?([\d.]+) fps", err)
    if m:
        info["fps"] = float(m.group(1))
    m = re.search(r"Stream #\S+.*?: Audio: (\w+)", err)
    if m:
        info["audio_codec"] = m.group(1)
    return info


def load_mesh(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read an .obj/.ply template as (vertices (V, 3) float32, faces (F, 3) int32), keeping vertex order."""
    import trimesh

    path = Path(path)
    if not path.exists():
        raise RenderError(f"template mesh not found: {path}")
    try:
        mesh = trimesh.load(str(path), force="mesh", process=False, maintain_order=True)
    except Exception as e:  # noqa: BLE001
        raise RenderError(f"could not read mesh {path.name}: {e}; give an .obj or .ply triangle mesh") from e
    v = np.asarray(mesh.vertices, np.float32)
    f = np.asarray(mesh.faces, np.int32)
    if len(v) == 0 or len(f) == 0:
        raise RenderError(f"{path.name} holds no triangles; give a triangle mesh template")
    return v, f


def _mesh_for(anim: Animation, size: int):
    """(vertex sequence (T, V, 3), faces, colours, bounds) to render for an animation."""
    from diffusiontalker.render.rig import load_head

    if anim.kind == "blendshape":
        rig = load_head()
        from diffusiontalker.arkit import ARKIT_52, reorder

        w = anim.values if tuple(anim.names or ()) == ARKIT_52 else reorder(anim.values, anim.names)
        verts = rig.apply(np.clip(w, 0.0, 1.0))
        face_idx = np.concatenate([rig.regions["skin"], rig.regions["eyes"]])
        lo, hi = rig.neutral[face_idx].min(0), rig.neutral[face_idx].max(0)
        bounds = np.array([lo, [hi[0], hi[1] - 0.03, hi[2]]], np.float32)
        return verts, rig.faces, rig.colors, bounds
    verts = anim.values
    faces = anim.faces
    colors = None
    if faces is None:
        rig = load_head()
        if verts.shape[1] != rig.num_vertices:
            raise RenderError(f"vertex animation with {verts.shape[1]} vertices has no faces; give the template "
                              f"mesh (.obj/.ply) it was made for")
        faces, colors = rig.faces, rig.colors
    bounds = anim.template if anim.template is not None else verts[0]
    return verts, faces, colors, bounds


def _frames_for(anim: Animation, size: int) -> Iterator[np.ndarray]:
    from diffusiontalker.render.renderer import Renderer

    verts, faces, colors, bounds = _mesh_for(anim, size)
    r = Renderer(faces, colors, size=size, bounds_vertices=bounds)
    try:
        yield from r.render_sequence(verts)
    finally:
        r.close()


def _draw_label(img: np.ndarray, text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    im = Image.fromarray(img)
    d = ImageDraw.Draw(im, "RGBA")
    px = max(10, img.shape[0] // 22)
    font = label_font(px)
    lines = text.split("\n")
    hgt = (px + 3) * len(lines) + 6
    d.rectangle([0, 0, img.shape[1], hgt], fill=(0, 0, 0, 150))
    for i, line in enumerate(lines):
        d.text((6, 3 + i * (px + 3)), line, fill=(255, 255, 255, 255), font=font)
    return np.asarray(im)


def describe(anim: Animation) -> str:
    """Tile label: model, steps, seed and generation time."""
    parts = [anim.model or anim.kind]
    if anim.steps is not None:
        parts.append(f"{anim.steps} steps")
    if anim.seed is not None:
        parts.append(f"seed {anim.seed}")
    t = anim.timings.get("sample", anim.timings.get("total")) if anim.timings else None
    if t is not None:
        parts.append(f"{t:.2f} s")
    return " · ".join(parts)


#: ``progress(frames_done, frames_total)``, called after each frame is rendered (e.g. to move a progress bar).
FrameProgress = Callable[[int, int], None]


def _counted(frames: Iterable[np.ndarray], total: int, progress: FrameProgress | None) -> Iterator[np.ndarray]:
    """Pass frames through, reporting ``progress(i, total)`` after each one."""
    if progress is None:
        yield from frames
        return
    for i, f in enumerate(frames, 1):
        yield f
        progress(i, total)


def render_animation(anim: Animation, out: str | os.PathLike, size: int = 512, label: str | None = None,
                     progress: FrameProgress | None = None) -> Path:
    """Render an animation to mp4 with its audio (blendshapes on the procedural head, vertices on their mesh).

    ``progress(frames_done, frames_total)`` is called after every rendered frame when given.
    """
    frames = _frames_for(anim, size)
    if label:
        frames = (_draw_label(f, label) for f in frames)
    return write_video(_counted(frames, anim.num_frames, progress), out, anim.fps, anim.audio, SAMPLE_RATE)


def grid_frames(anims: list[Animation], labels: list[str] | None = None, size: int = 256,
                cols: int | None = None) -> Iterator[np.ndarray]:
    """Composite frames tiling several animations (same fps); shorter ones hold their last frame."""
    if not anims:
        raise RenderError("render_grid needs at least one animation")
    fps = {float(a.fps) for a in anims}
    if len(fps) > 1:
        raise RenderError(f"animations in one grid must share an fps, got {sorted(fps)}")
    labels = labels if labels is not None else [describe(a) for a in anims]
    if len(labels) != len(anims):
        raise RenderError(f"{len(labels)} labels for {len(anims)} animations")
    n = len(anims)
    cols = cols or min(n, 4)
    rows = (n + cols - 1) // cols
    T = max(a.num_frames for a in anims)
    gens = [_frames_for(a, size) for a in anims]
    last: list[np.ndarray | None] = [None] * n
    try:
        for _ in range(T):
            canvas = np.full((rows * size, cols * size, 3), 20, np.uint8)
            for i, g in enumerate(gens):
                f = next(g, None)
                if f is None:
                    f = last[i]
                else:
                    f = _draw_label(f, labels[i]) if labels[i] else f
                    last[i] = f
                r, c = divmod(i, cols)
                canvas[r * size:(r + 1) * size, c * size:(c + 1) * size] = f
            yield canvas
    finally:
        for g in gens:
            g.close()


def render_grid(anims: list[Animation], out: str | os.PathLike, labels: list[str] | None = None, size: int = 256,
                cols: int | None = None, audio: np.ndarray | None = None,
                progress: FrameProgress | None = None) -> Path:
    """One video tiling several animations (teacher | student | diversity samples), each tile labelled.

    ``progress(frames_done, frames_total)`` is called after every composited frame when given.
    """
    if audio is None:
        audio = next((a.audio for a in anims if a.audio is not None), None)
    total = max((a.num_frames for a in anims), default=0)
    return write_video(_counted(grid_frames(anims, labels, size, cols), total, progress), out,
                       anims[0].fps if anims else 30, audio)
