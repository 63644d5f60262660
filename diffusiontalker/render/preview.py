"""Live 3D preview in the browser: payloads and HTML for the project's own WebGL2 player (``webgl/player.js``).

The server only ships numbers; the browser's GPU draws. The head (neutral mesh, faces, normals, colours and the
52 ARKit morph targets with their normal deltas, sparse float16) is sent ONCE per page; each result is a few
base64 float arrays: (T, 52) float32 weights, or (T, V, 3) float16 offsets over a template for vertex models.
The player shows ``frame = round(audio.currentTime * fps)`` of the page's ``<audio>`` element (play, pause and
seek just work); drag orbits, the wheel zooms, double-click or the ↺ button resets the view; several animations
(teacher | student | diversity samples) are drawn as labelled tiles of ONE canvas on one audio clock.

Gradio (6.31) inserts ``gr.HTML`` values with ``innerHTML`` and patches later values into the same DOM nodes,
and neither runs ``<script>`` tags. So in the app the player and the head mesh are loaded once through the
component's ``head=`` (gradio appends those scripts to the document head before ``js_on_load`` runs) and each
result is a script-free snippet that the player mounts by itself: a MutationObserver watches for
``[data-dt-player]`` elements and for changes of their ``data-dt-anim`` payload (then it disposes the old WebGL
context and remounts); ``JS_ON_LOAD`` also mounts explicitly after each value update::

    from diffusiontalker.render import preview

    view = gr.HTML(elem_id="preview", head=preview.player_head(), js_on_load=preview.JS_ON_LOAD)

    def generate(audio_path, ...):
        anims = pipeline(audio_path, steps=8, num_samples=3)           # list[Animation]
        html = preview.preview_html(anims, labels=["sample 1", "sample 2", "sample 3"],
                                    audio_url=None,                      # None: the wav is inlined from anims[0]
                                    embed_player=False, embed_head=False)
        return html                                                      # -> view; the mp4 is a separate button

``preview_html(...)`` with the defaults (player and head embedded) is a self-contained snippet for any page that
executes scripts (Jupyter, a static file); ``standalone_page`` writes a full HTML page (tests, CLI previews):
``python -m diffusiontalker.render.preview anim.npy --wav speech.wav --out preview.html``.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import html
import io
import json
import wave
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from diffusiontalker.animation import Animation
from diffusiontalker.arkit import ARKIT_52, reorder
from diffusiontalker.audio import SAMPLE_RATE
from diffusiontalker.errors import RenderError

if TYPE_CHECKING:
    from diffusiontalker.render.rig import HeadRig

PLAYER_PATH = Path(__file__).resolve().parent / "webgl" / "player.js"
PAYLOAD_VERSION = 1
POSITION_EPS = 1e-6  # metres: morph displacements below this are dropped from the sparse payload
NORMAL_EPS = 1e-3  # normal-delta components below this are dropped

#: JavaScript for ``gr.HTML(js_on_load=...)``: mount the player on first render and after every value update.
JS_ON_LOAD = ("if (window.DTPlayer) { window.DTPlayer.scan(element); "
              "watch('value', function () { window.DTPlayer.scan(element); }); }")


@functools.lru_cache(maxsize=1)
def player_js() -> str:
    """The player's JavaScript source (read from the package)."""
    try:
        return PLAYER_PATH.read_text(encoding="utf-8")
    except OSError as err:
        raise RenderError(f"the WebGL player is missing from the install ({PLAYER_PATH}); reinstall the package") \
            from err


def __getattr__(name: str) -> str:  # PLAYER_JS is read on first use, not at import
    if name == "PLAYER_JS":
        return player_js()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------------------------
# array <-> base64
def encode_array(a: np.ndarray, dtype: str) -> str:
    """Little-endian bytes of ``a`` as ``dtype`` ("f4", "f2", "u1", "u2", "u4"), base64 encoded."""
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode("ascii")


def decode_array(s: str, dtype: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Inverse of :func:`encode_array` (returns a native-endian copy)."""
    a = np.frombuffer(base64.b64decode(s), dtype=np.dtype(dtype).newbyteorder("<")).astype(np.dtype(dtype))
    return a.reshape(shape) if shape is not None else a


def _index_dtype(n: int) -> str:
    return "u2" if n <= 0xFFFF else "u4"


def _js_dtype(dtype: str) -> str:
    return {"u2": "u16", "u4": "u32"}[dtype]


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals: (..., V, 3), (F, 3) -> (..., V, 3) float32 (same formula as the player)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    fn = np.cross(v[..., f[:, 1], :] - v[..., f[:, 0], :], v[..., f[:, 2], :] - v[..., f[:, 0], :])  # (..., F, 3)
    lead = fn.shape[:-2]
    fn = fn.reshape(-1, len(f), 3)  # (B, F, 3)
    V = v.shape[-2]
    n = np.zeros((fn.shape[0], V, 3))
    for corner in range(3):  # scatter-add each face normal to its three corners
        for axis in range(3):
            n[:, :, axis] += np.stack([np.bincount(f[:, corner], b[:, axis], minlength=V) for b in fn])
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    return n.reshape(*lead, V, 3).astype(np.float32)


def _mesh_view(vertices: np.ndarray, regions: dict[str, np.ndarray] | None = None) -> dict:
    """Camera framing: the face (skin + eyes, top of the skull cropped) for the rig, else the bounding box."""
    regions = regions or {}
    if "skin" in regions:
        face = vertices[np.concatenate([regions["skin"], regions.get("eyes", regions["skin"])])]
        lo, hi = face.min(0), face.max(0)
        hi[1] -= 0.1 * (hi[1] - lo[1])
    else:
        lo, hi = vertices.min(0), vertices.max(0)
    return {"target": ((lo + hi) / 2).round(5).tolist(), "extent": float(max(hi[0] - lo[0], hi[1] - lo[1])),
            "depth": float(hi[2] - lo[2])}


# ----------------------------------------------------------------------------------------------------------------
# payloads
def _head_key(rig: HeadRig) -> str:
    h = hashlib.sha1()
    for a in (rig.neutral, rig.faces, rig.deltas):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]


_HEAD_CACHE: dict[int, tuple[object, dict]] = {}


def head_payload(rig: HeadRig | None = None) -> dict:
    """The head for the player (JSON-able, cached per rig object).

    Keys: ``key`` (content hash), ``V``, ``F``, ``neutral`` (V,3) f32, ``faces`` (F,3) u16/u32 (``faces_dtype``),
    ``normals`` (V,3) f16, ``colors`` (V,4) u8, ``view`` (camera target/extent), and ``morphs``: ``names`` (52),
    ``counts`` (52,) vertices kept per morph, ``index`` (N,) vertex ids, ``delta`` (N,3) f16 position deltas and
    ``ndelta`` (N,3) f16 normal deltas (normal of the full shape minus the neutral normal), morph after morph.
    """
    if rig is None:
        from diffusiontalker.render.rig import load_head

        rig = load_head()
    hit = _HEAD_CACHE.get(id(rig))
    if hit is not None and hit[0] is rig:
        return hit[1]
    neutral = np.asarray(rig.neutral, np.float32)  # (V, 3)
    faces = np.asarray(rig.faces, np.int64)  # (F, 3)
    deltas = np.asarray(rig.deltas, np.float32)  # (M, V, 3)
    colors = np.asarray(rig.colors, np.uint8)  # (V, 4)
    V, M = len(neutral), len(deltas)
    if deltas.shape[1:] != neutral.shape or faces.max(initial=0) >= V or colors.shape != (V, 4):
        raise RenderError(f"inconsistent head: neutral {neutral.shape}, deltas {deltas.shape}, colors {colors.shape},"
                          f" faces index up to {faces.max(initial=0)}")
    n0 = vertex_normals(neutral, faces)  # (V, 3)
    index, dpos, dnrm, counts = [], [], [], []
    for k in range(M):
        dn = vertex_normals(neutral + deltas[k], faces) - n0 if np.any(deltas[k]) else np.zeros_like(n0)  # (V, 3)
        keep = np.flatnonzero((np.abs(deltas[k]).max(1) > POSITION_EPS) | (np.abs(dn).max(1) > NORMAL_EPS))
        index.append(keep)
        dpos.append(deltas[k][keep])
        dnrm.append(dn[keep])
        counts.append(int(len(keep)))
    fdt, idt = _index_dtype(V - 1), _index_dtype(V - 1)
    names = list(getattr(rig, "names", ARKIT_52))
    payload = {
        "version": PAYLOAD_VERSION,
        "key": _head_key(rig),
        "V": V,
        "F": len(faces),
        "neutral": encode_array(neutral, "f4"),
        "faces": encode_array(faces, fdt),
        "faces_dtype": _js_dtype(fdt),
        "normals": encode_array(n0, "f2"),
        "colors": encode_array(colors, "u1"),
        "view": _mesh_view(neutral, getattr(rig, "regions", None)),
        "morphs": {
            "names": names,
            "counts": counts,
            "index": encode_array(np.concatenate(index), idt),
            "index_dtype": _js_dtype(idt),
            "delta": encode_array(np.concatenate(dpos), "f2"),
            "ndelta": encode_array(np.concatenate(dnrm), "f2"),
        },
    }
    if len(_HEAD_CACHE) >= 4:
        _HEAD_CACHE.pop(next(iter(_HEAD_CACHE)))
    _HEAD_CACHE[id(rig)] = (rig, payload)
    return payload


_JSON_CACHE: dict[str, str] = {}


def _head_json(payload: dict) -> str:
    """The head payload as compact JSON, serialised once per head (it is inlined in every page that needs it)."""
    key = payload["key"]
    if key not in _JSON_CACHE:
        if len(_JSON_CACHE) >= 4:
            _JSON_CACHE.pop(next(iter(_JSON_CACHE)))
        _JSON_CACHE[key] = json.dumps(payload, separators=(",", ":"))
    return _JSON_CACHE[key]


def decode_head(payload: dict) -> dict[str, np.ndarray]:
    """Arrays of a head payload back as numpy (tests, debugging): neutral, faces, normals, colors, deltas (dense)."""
    V, F = payload["V"], payload["F"]
    m = payload["morphs"]
    idt = {"u16": "u2", "u32": "u4"}
    index = decode_array(m["index"], idt[m["index_dtype"]]).astype(np.int64)
    dpos = decode_array(m["delta"], "f2", (-1, 3)).astype(np.float32)
    dnrm = decode_array(m["ndelta"], "f2", (-1, 3)).astype(np.float32)
    deltas = np.zeros((len(m["names"]), V, 3), np.float32)
    ndeltas = np.zeros_like(deltas)
    start = 0
    for k, c in enumerate(m["counts"]):
        deltas[k, index[start:start + c]] = dpos[start:start + c]
        ndeltas[k, index[start:start + c]] = dnrm[start:start + c]
        start += c
    return {
        "neutral": decode_array(payload["neutral"], "f4", (V, 3)),
        "faces": decode_array(payload["faces"], idt[payload["faces_dtype"]], (F, 3)).astype(np.int32),
        "normals": decode_array(payload["normals"], "f2", (V, 3)).astype(np.float32),
        "colors": decode_array(payload["colors"], "u1", (V, 4)),
        "deltas": deltas,
        "normal_deltas": ndeltas,
    }


def animation_payload(anims: list[Animation], labels: list[str] | None = None, rig: HeadRig | None = None) -> dict:
    """The per-result payload: one entry per animation (a tile), base64 arrays, plus the head key it needs.

    Blendshape entries carry ``weights`` (T, 52) float32 in the head's channel order (matched by name);
    vertex entries carry ``offsets`` (T, V, 3) float16 from their template, and a ``mesh`` index into ``meshes``
    (template (V, 3) float32 + faces, shared by animations with the same template).
    """
    if not anims:
        raise RenderError("nothing to preview: give at least one animation")
    if labels is not None and len(labels) != len(anims):
        raise RenderError(f"{len(labels)} labels for {len(anims)} animations; give one label per animation")
    entries, meshes, mesh_ids = [], [], {}
    head_key = None
    for i, a in enumerate(anims):
        if a.num_frames == 0:
            raise RenderError(f"animation {i} has no frames; the audio was probably too short to animate")
        label = labels[i] if labels is not None else (a.model or "")
        entry: dict = {"label": str(label), "kind": a.kind, "fps": float(a.fps), "frames": a.num_frames}
        if a.kind == "blendshape":
            head = head_payload(rig)
            head_key = head["key"]
            names = head["morphs"]["names"]
            w = reorder(a.values, a.names or ARKIT_52, names)  # (T, 52) by name
            entry |= {"channels": len(names), "weights": encode_array(w, "f4")}
        else:
            if a.template is None:
                raise RenderError("a vertex animation needs its template mesh (Animation.template) to be previewed")
            tkey = hashlib.sha1(np.ascontiguousarray(a.template, np.float32).tobytes()
                                + (np.ascontiguousarray(a.faces, np.int64).tobytes() if a.faces is not None
                                   else b"")).hexdigest()
            if tkey not in mesh_ids:
                V = a.template.shape[0]
                mesh: dict = {"V": V, "template": encode_array(a.template, "f4"), "faces": None}
                if a.faces is not None:
                    fdt = _index_dtype(V - 1)
                    mesh |= {"faces": encode_array(np.asarray(a.faces), fdt), "faces_dtype": _js_dtype(fdt)}
                mesh_ids[tkey] = len(meshes)
                meshes.append(mesh)
            offsets = a.values - a.template[None]  # (T, V, 3)
            entry |= {"mesh": mesh_ids[tkey], "offsets": encode_array(offsets, "f2")}
        entries.append(entry)
    return {"version": PAYLOAD_VERSION, "head": head_key, "anims": entries, "meshes": meshes,
            "duration": max(a.duration for a in anims)}


# ----------------------------------------------------------------------------------------------------------------
# HTML
def wav_bytes(audio: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    """Mono float audio -> 16-bit PCM wav file bytes (for a data: URL)."""
    pcm = (np.clip(np.asarray(audio, np.float32).reshape(-1), -1.0, 1.0) * 32767.0).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _grid(n: int) -> tuple[int, int]:
    cols = int(np.ceil(np.sqrt(n)))
    return cols, int(np.ceil(n / cols))


def _script(code: str) -> str:
    return "<script>" + code.replace("</script", "<\\/script") + "</script>"


def player_head(rig: HeadRig | None = None, include_mesh: bool = True) -> str:
    """``<script>`` tags for a page/component ``head=``: the player and (by default) the head mesh, loaded once."""
    parts = [_script(player_js())]
    if include_mesh:
        head = head_payload(rig)
        parts.append(_script(f"window.DTPlayer.registerHead({json.dumps(head['key'])}, {_head_json(head)});"))
    return "\n".join(parts)


def preview_html(anims: list[Animation], labels: list[str] | None = None, audio_url: str | None = None,
                 audio_b64_wav: bytes | str | None = None, size: int = 512, element_id: str = "dt-preview", *,
                 embed_player: bool = True, embed_head: bool = True, rig: HeadRig | None = None) -> str:
    """An HTML snippet: a canvas with all animations as tiles, an ``<audio controls>`` clock, and the payload.

    Args:
        anims: the animations to show, one tile each (e.g. teacher, student, diversity samples).
        labels: one label per tile (default: each animation's ``model``).
        audio_url: where the browser gets the speech (e.g. a gradio file URL).
        audio_b64_wav: the wav itself (raw bytes, or already base64) to inline as a data: URL. When neither this
            nor ``audio_url`` is given, the first animation's ``audio`` is inlined; without any audio the player
            loops on its own clock.
        size: canvas width in pixels; tiles are square, laid out in a near-square grid (2 tiles: 1x2, 4: 2x2).
        element_id: DOM id of the player (``window.dtPlayers[element_id]`` in the page).
        embed_player: include ``<script>player.js</script>`` + a mount call (off inside gr.HTML, which won't run
            scripts: load :func:`player_head` through ``head=`` instead).
        embed_head: put the head mesh on the element (``data-dt-head``, ~1.5 MB); off when :func:`player_head`
            registered it already.
    """
    payload = animation_payload(anims, labels, rig=rig)
    cols, rows = _grid(len(anims))
    payload["cols"] = cols
    tile = max(16, int(size) // cols)
    width, height = tile * cols, tile * rows
    if audio_url is None and audio_b64_wav is None and anims[0].audio is not None:
        audio_b64_wav = wav_bytes(anims[0].audio, anims[0].audio_sample_rate)
    if audio_url is not None:
        src = audio_url
    elif audio_b64_wav is not None:
        b64 = audio_b64_wav if isinstance(audio_b64_wav, str) else base64.b64encode(audio_b64_wav).decode("ascii")
        src = "data:audio/wav;base64," + b64
    else:
        src = None
    attrs = [f'id="{html.escape(element_id)}"', 'class="dt-player"', 'data-dt-player="1"',
             f'style="width:{width}px;max-width:100%"',
             f'data-dt-anim="{html.escape(json.dumps(payload, separators=(",", ":")))}"']
    if payload["head"] is not None:
        attrs.append(f'data-dt-head-key="{payload["head"]}"')
        if embed_head:
            attrs.append(f'data-dt-head="{html.escape(_head_json(head_payload(rig)))}"')
    audio = (f'<audio class="dt-audio" controls preload="auto" src="{html.escape(src)}"></audio>' if src
             else "")
    out = (f'<div {" ".join(attrs)}><div class="dt-stage">'
           f'<canvas class="dt-canvas" width="{width}" height="{height}"></canvas></div>{audio}</div>')
    if embed_player:
        out += _script(player_js()) + _script("window.DTPlayer.scan(document);")
    return out


def standalone_page(anims: list[Animation], labels: list[str] | None = None, wav_path: str | Path | None = None,
                    out: str | Path | None = None, size: int = 512, title: str = "DiffusionTalker preview",
                    rig: HeadRig | None = None) -> str:
    """A complete HTML page with the player (for tests, sharing and the CLI); written to ``out`` when given."""
    wav = Path(wav_path).read_bytes() if wav_path is not None else None
    body = preview_html(anims, labels, audio_b64_wav=wav, size=size, rig=rig)
    page = ("<!doctype html><html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title>"
            "<style>body{margin:16px;background:#fafafa;font-family:system-ui,sans-serif}</style></head>"
            f"<body>{body}</body></html>")
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(page, encoding="utf-8")
    return page


def main(argv: list[str] | None = None) -> int:
    """``python -m diffusiontalker.render.preview anim.npy [more.npy] --wav speech.wav --out preview.html``."""
    ap = argparse.ArgumentParser(description="Write an HTML page that plays (T, 52) ARKit animations in 3D.")
    ap.add_argument("npy", nargs="+", help="(T, 52) ARKit-52 weights at --fps, one file per tile")
    ap.add_argument("--wav", help="speech to play along")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", default="preview.html")
    args = ap.parse_args(argv)
    anims = [Animation(np.load(p), fps=args.fps, model=Path(p).stem) for p in args.npy]
    standalone_page(anims, wav_path=args.wav, out=args.out, size=args.size)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
