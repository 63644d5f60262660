"""Export animations to the formats other tools read, and read them back.

Formats (``fmt`` or the file suffix):
* ``npy``    — ``.npy`` values (T, 52) float32 or (T, V, 3) + ``.json`` sidecar (``Animation.metadata()``).
* ``csv``    — Live Link Face CSV: the exact 61-value header, columns written BY NAME, ``BlendShapeCount`` 61,
  ``Timecode`` ``HH:MM:SS:FF.mmm``, head and eye rotations 0.
* ``beat``   — BEAT-style JSON: ``names`` = the 51 alphabetical names (no tongueOut), ``frames[].time/weights/
  rotation``.
* ``glb``    — glTF binary: the head (or the vertex template) with morph targets and a morph-weight animation at
  the animation's fps (linear interpolation; one keyframe per frame). For **vertex** animations every frame
  becomes one morph target (offset from the template) whose weight is 1 on its own frame and 0 elsewhere; at
  more than ``GLB_MAX_VERTEX_FRAMES`` frames the frames are sampled evenly (documented in ``extras``).
* ``objzip`` — a zip of per-frame OBJ files (vertex animations, or blendshapes posed on the head).

Blendshape values are clipped to [0, 1]; animations holding NaN or infinite values are refused (ExportError).
Every write goes to a temporary file that is renamed into place.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from diffusiontalker.animation import Animation
from diffusiontalker.arkit import ARKIT_52, BEAT_51, LIVELINK_CSV_HEADER, from_pascal, reorder
from diffusiontalker.audio import FPS
from diffusiontalker.errors import ExportError

FORMATS: tuple[str, ...] = ("npy", "csv", "beat", "glb", "objzip")
_SUFFIX_FORMAT = {".npy": "npy", ".csv": "csv", ".json": "beat", ".glb": "glb", ".zip": "objzip"}
_FORMAT_SUFFIX = {"npy": ".npy", "csv": ".csv", "beat": ".json", "glb": ".glb", "objzip": ".zip"}
GLB_MAX_VERTEX_FRAMES = 300
_LIVELINK_ROTATIONS = LIVELINK_CSV_HEADER[-9:]


def _atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temp file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=str(path.parent))
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _arkit_values(anim: Animation) -> np.ndarray:
    """(T, 52) ARKit-ordered values clipped to [0, 1]."""
    if anim.kind != "blendshape":
        raise ExportError("this format holds blendshape curves; export vertex animations as npy, glb or objzip")
    names = tuple(anim.names or ARKIT_52)
    v = anim.values if names == ARKIT_52 else reorder(anim.values, names, ARKIT_52)
    return np.clip(v, 0.0, 1.0).astype(np.float32)


def timecode(frame: int, fps: float) -> str:
    """Live Link Face timecode ``HH:MM:SS:FF.mmm`` of a frame index (FF = frame within the second)."""
    seconds = frame / float(fps)
    whole = int(np.floor(seconds + 1e-9))
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    ff = int(round((seconds - whole) * fps)) % max(1, int(round(fps)))
    ms = int(round((seconds - whole) * 1000.0)) % 1000
    return f"{h:02d}:{m:02d}:{s:02d}:{ff:02d}.{ms:03d}"


def _parse_timecode(tc: str, fps: float) -> float:
    hms, _, frac = tc.partition(".")
    h, m, s, ff = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s + (int(frac) / 1000.0 if frac else ff / fps)


# ---------------------------------------------------------------------------------------------------------------
def _save_npy(path: Path, arr: np.ndarray) -> Path:
    def w(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, arr)

    return _atomic_write(path, w)


def _write_npy(anim: Animation, path: Path) -> None:
    values = np.clip(anim.values, 0.0, 1.0) if anim.kind == "blendshape" else anim.values  # as every format
    _save_npy(path, values.astype(np.float32))
    meta = anim.metadata()
    if anim.kind == "vertex" and anim.template is not None:
        meta["template_file"] = path.with_suffix(".template.npy").name
        _save_npy(path.with_suffix(".template.npy"), anim.template)
    if anim.faces is not None:
        meta["faces_file"] = path.with_suffix(".faces.npy").name
        _save_npy(path.with_suffix(".faces.npy"), np.asarray(anim.faces, np.int32))
    _atomic_write(path.with_suffix(".json"), lambda t: t.write_text(json.dumps(meta, indent=1)))


def _write_csv(anim: Animation, path: Path) -> None:
    vals = _arkit_values(anim)  # (T, 52)
    col_of = {n: i for i, n in enumerate(ARKIT_52)}
    header = list(LIVELINK_CSV_HEADER)
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(header)
    for t in range(len(vals)):
        row: list[str] = [timecode(t, anim.fps), "61"]
        for name in header[2:]:
            if name in _LIVELINK_ROTATIONS:
                row.append("0")
            else:
                row.append(f"{vals[t, col_of[from_pascal(name)]]:.6f}")
        wr.writerow(row)
    _atomic_write(path, lambda t: t.write_text(buf.getvalue()))


def _write_beat(anim: Animation, path: Path) -> None:
    vals = reorder(_arkit_values(anim), ARKIT_52, BEAT_51)  # (T, 51) by name
    doc = {
        "names": list(BEAT_51),
        "fps": anim.fps,
        "frames": [{"time": round(t / anim.fps, 6), "weights": [round(float(x), 6) for x in vals[t]],
                    "rotation": [0.0, 0.0, 0.0]} for t in range(len(vals))],
    }
    _atomic_write(path, lambda t: t.write_text(json.dumps(doc)))


def _posed_meshes(anim: Animation) -> tuple[np.ndarray, np.ndarray]:
    """(T, V, 3) vertices and (F, 3) faces for mesh formats."""
    if anim.kind == "blendshape":
        from diffusiontalker.render.rig import load_head

        rig = load_head()
        return rig.apply(_arkit_values(anim)), rig.faces
    faces = anim.faces
    if faces is None:
        from diffusiontalker.render.rig import load_head

        rig = load_head()
        if anim.values.shape[1] != rig.num_vertices:
            raise ExportError("this vertex animation has no faces; set Animation.faces from its template mesh")
        faces = rig.faces
    return anim.values, np.asarray(faces, np.int32)


def _write_objzip(anim: Animation, path: Path) -> None:
    verts, faces = _posed_meshes(anim)
    fbuf = io.StringIO()
    np.savetxt(fbuf, np.asarray(faces, np.int64) + 1, fmt="f %d %d %d")
    face_txt = fbuf.getvalue()
    digits = max(4, len(str(len(verts))))

    def w(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for t, v in enumerate(verts):
                buf = io.StringIO()
                np.savetxt(buf, v, fmt="v %.6f %.6f %.6f")
                z.writestr(f"frame_{t:0{digits}d}.obj", f"# frame {t} at {anim.fps} fps\n" + buf.getvalue() + face_txt)
            z.writestr("animation.json", json.dumps(anim.metadata()))

    _atomic_write(path, w)


def _write_glb(anim: Animation, path: Path) -> None:
    import pygltflib as g

    if anim.kind == "blendshape":
        from diffusiontalker.render.rig import load_head

        rig = load_head()
        base, faces, colors = rig.neutral, rig.faces, rig.colors
        targets = rig.deltas  # (52, V, 3)
        weights = _arkit_values(anim)  # (T, 52)
        target_names = list(ARKIT_52)
        extras = {"targetNames": target_names, "kind": "blendshape"}
    else:
        verts, faces = _posed_meshes(anim)
        base = anim.template if anim.template is not None else verts[0]
        colors = None
        T = len(verts)
        frames = np.arange(T) if T <= GLB_MAX_VERTEX_FRAMES else np.linspace(0, T - 1, GLB_MAX_VERTEX_FRAMES).round(
        ).astype(int)
        targets = verts[frames] - base[None]
        weights = np.eye(len(frames), dtype=np.float32)
        target_names = [f"frame_{i}" for i in frames]
        extras = {"targetNames": target_names, "kind": "vertex", "sampled_frames": frames.tolist()}
    base = np.asarray(base, np.float32)
    faces = np.asarray(faces, np.uint32)
    blobs: list[bytes] = []
    views: list[g.BufferView] = []
    accessors: list[g.Accessor] = []
    offset = 0

    def add(arr: np.ndarray, comp: int, typ: str, target: int | None = None, minmax: bool = False) -> int:
        nonlocal offset
        data = np.ascontiguousarray(arr).tobytes()
        pad = (-len(data)) % 4
        views.append(g.BufferView(buffer=0, byteOffset=offset, byteLength=len(data), target=target))
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad
        acc = g.Accessor(bufferView=len(views) - 1, componentType=comp, count=len(arr), type=typ)
        if minmax:
            a2 = arr.reshape(len(arr), -1)
            acc.min, acc.max = a2.min(0).tolist(), a2.max(0).tolist()
        accessors.append(acc)
        return len(accessors) - 1

    pos = add(base, g.FLOAT, g.VEC3, g.ARRAY_BUFFER, minmax=True)
    idx = add(faces.reshape(-1), g.UNSIGNED_INT, g.SCALAR, g.ELEMENT_ARRAY_BUFFER)
    attrs = g.Attributes(POSITION=pos)
    if colors is not None:
        attrs.COLOR_0 = add(np.asarray(colors, np.uint8)[:, :4], g.UNSIGNED_BYTE, g.VEC4, g.ARRAY_BUFFER)
        accessors[-1].normalized = True
    tgt = [{"POSITION": add(np.asarray(d, np.float32), g.FLOAT, g.VEC3, g.ARRAY_BUFFER, minmax=True)}
           for d in targets]
    times = (np.arange(len(weights), dtype=np.float32) / float(anim.fps))
    if anim.kind == "vertex" and len(weights) != anim.num_frames:
        times = (np.asarray(extras["sampled_frames"], np.float32) / float(anim.fps))
    t_acc = add(times, g.FLOAT, g.SCALAR, minmax=True)
    w_acc = add(np.asarray(weights, np.float32).reshape(-1), g.FLOAT, g.SCALAR)
    prim = g.Primitive(attributes=attrs, indices=idx, targets=tgt, mode=g.TRIANGLES, material=0)
    mesh = g.Mesh(primitives=[prim], weights=[0.0] * len(tgt), extras={"targetNames": target_names})
    anim_g = g.Animation(name="diffusiontalker",
                         samplers=[g.AnimationSampler(input=t_acc, output=w_acc, interpolation="LINEAR")],
                         channels=[g.AnimationChannel(sampler=0, target=g.AnimationChannelTarget(node=0,
                                                                                                 path="weights"))])
    material = g.Material(pbrMetallicRoughness=g.PbrMetallicRoughness(baseColorFactor=[1, 1, 1, 1],
                                                                       metallicFactor=0.0, roughnessFactor=0.6),
                          doubleSided=False, name="skin")
    blob = b"".join(blobs)
    gltf = g.GLTF2(
        asset=g.Asset(generator="diffusiontalker", version="2.0"), scene=0, scenes=[g.Scene(nodes=[0])],
        nodes=[g.Node(mesh=0, name="head")], meshes=[mesh], materials=[material], animations=[anim_g],
        accessors=accessors, bufferViews=views, buffers=[g.Buffer(byteLength=len(blob))],
        extras={**extras, "fps": anim.fps, "num_frames": anim.num_frames, "metadata": anim.metadata()},
    )
    gltf.set_binary_blob(blob)
    _atomic_write(path, lambda t: gltf.save_binary(str(t)))


_WRITERS: dict[str, Callable[[Animation, Path], None]] = {
    "npy": _write_npy, "csv": _write_csv, "beat": _write_beat, "glb": _write_glb, "objzip": _write_objzip,
}


def export_animation(anim: Animation, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write ``anim`` to ``path`` in ``fmt`` (one of :data:`FORMATS`; from the suffix when None)."""
    path = Path(path)
    if fmt is None:
        fmt = _SUFFIX_FORMAT.get(path.suffix.lower())
        if fmt is None:
            raise ExportError(f"cannot tell the format from {path.name!r}; pass fmt= one of {list(FORMATS)} or use "
                              f"a suffix {sorted(_SUFFIX_FORMAT)}")
    fmt = fmt.lower()
    if fmt not in _WRITERS:
        raise ExportError(f"unknown export format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if not path.suffix:
        path = path.with_suffix(_FORMAT_SUFFIX[fmt])
    if path.exists() and path.is_dir():
        raise ExportError(f"{path} is a directory; give a file path ending in {_FORMAT_SUFFIX[fmt]}")
    if not np.isfinite(anim.values).all() or (anim.template is not None and not np.isfinite(anim.template).all()):
        raise ExportError("the animation holds NaN or infinite values, which no format can carry faithfully; "
                          "clean them (np.nan_to_num) before exporting")
    _WRITERS[fmt](anim, path)
    return path


# ---------------------------------------------------------------------------------------------------------------
def _read_npy(path: Path) -> Animation:
    values = np.load(path, allow_pickle=False)
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text()) if side.exists() else {}
    kind = meta.get("kind") or ("vertex" if values.ndim == 3 else "blendshape")
    template = faces = None
    if meta.get("template_file") and (path.parent / meta["template_file"]).exists():
        template = np.load(path.parent / meta["template_file"], allow_pickle=False)
    if meta.get("faces_file") and (path.parent / meta["faces_file"]).exists():
        faces = np.load(path.parent / meta["faces_file"], allow_pickle=False)
    names = tuple(meta["names"]) if meta.get("names") else (ARKIT_52 if kind == "blendshape" else None)
    return Animation(values=values, fps=float(meta.get("fps", FPS)), kind=kind, names=names, template=template,
                     faces=faces, seed=meta.get("seed"), steps=meta.get("steps"), identity=meta.get("identity"),
                     identity_scores=meta.get("identity_scores") or {}, timings=meta.get("timings") or {},
                     model=meta.get("model") or "", emotion=meta.get("emotion"),
                     emotion_scores=meta.get("emotion_scores") or {})


def _read_csv(path: Path) -> Animation:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:2] != ["Timecode", "BlendShapeCount"]:
        raise ExportError(f"{path.name} is not a Live Link Face CSV (header must start with Timecode,BlendShapeCount)")
    header = rows[0]
    data = [r for r in rows[1:] if r]
    shape_cols = [i for i, n in enumerate(header) if i >= 2 and n not in _LIVELINK_ROTATIONS]
    names = [from_pascal(header[i]) for i in shape_cols]
    vals = np.array([[float(r[i]) for i in shape_cols] for r in data], np.float32).reshape(len(data), len(names))
    return Animation(values=reorder(vals, names, ARKIT_52), fps=_csv_fps([r[0] for r in data]), kind="blendshape",
                     names=ARKIT_52)


def _csv_fps(stamps: list[str]) -> float:
    """The frame rate of a take from its timecodes: the millisecond field over the whole take, then (for short takes,
    where rounding to 1 ms blurs it) the integer rate whose timecodes reproduce the first frames exactly."""
    if len(stamps) < 2:
        return float(FPS)
    span = _parse_timecode(stamps[-1], FPS) - _parse_timecode(stamps[0], FPS)
    n = len(stamps) - 1
    if span <= 0:
        return float(FPS)
    estimate = n / span
    lo, hi = n / (span + 0.001), n / max(span - 0.001, 1e-6)  # each end is rounded to the nearest ms
    first = int(_parse_timecode(stamps[0], FPS))  # whole seconds before the first frame
    candidates = range(max(1, int(lo)), min(int(np.ceil(hi)), int(lo) + 240) + 1)
    fits = [f for f in candidates
            if all(timecode(first * f + i, f) == s for i, s in enumerate(stamps[:64]))]
    return float(min(fits, key=lambda f: abs(f - estimate)) if fits else round(estimate))


def _read_beat(path: Path) -> Animation:
    doc = json.loads(path.read_text())
    if "names" not in doc or "frames" not in doc:
        raise ExportError(f"{path.name} is not a BEAT-style JSON (needs 'names' and 'frames')")
    names = list(doc["names"])
    w = np.array([fr["weights"] for fr in doc["frames"]], np.float32).reshape(-1, len(names))
    fps = doc.get("fps")
    if fps is None:
        times = [fr["time"] for fr in doc["frames"][:2]]
        fps = round(1.0 / (times[1] - times[0])) if len(times) == 2 and times[1] > times[0] else FPS
    return Animation(values=reorder(w, names, ARKIT_52), fps=float(fps), kind="blendshape", names=ARKIT_52)


def load_animation(path: str | os.PathLike) -> Animation:
    """Read an animation exported as .npy(+.json), Live Link Face .csv or BEAT-style .json."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"no such file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return _read_npy(path)
        if suffix == ".csv":
            return _read_csv(path)
        if suffix == ".json":
            return _read_beat(path)
    except ExportError:
        raise
    except (ValueError, KeyError, IndexError, json.JSONDecodeError) as e:
        raise ExportError(f"could not read {path.name}: {e}") from e
    raise ExportError(f"cannot read {path.name}: load_animation reads .npy, .csv (Live Link Face) and .json (BEAT)")
