"""Rendering: the procedural ARKit-52 head (``rig``), the offscreen renderer (``renderer``) and video (``video``).

Nothing heavy is imported here: pyrender/OpenGL load on first use, so ``import diffusiontalker`` stays cheap.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register_cli"]


def _load_for_render(args: argparse.Namespace):
    from diffusiontalker.audio import load_audio
    from diffusiontalker.export import load_animation
    from diffusiontalker.render.video import load_mesh

    anim = load_animation(args.motion)
    if getattr(args, "template", None):
        verts, faces = load_mesh(args.template)
        if anim.kind == "vertex":
            anim.faces = faces
            if anim.template is None and verts.shape == anim.values.shape[1:]:
                anim.template = verts
    if getattr(args, "audio", None):
        anim.audio = load_audio(args.audio)
    return anim


def _cmd_contact_sheet(args: argparse.Namespace) -> int:
    from diffusiontalker.render.rig import contact_sheet

    out = contact_sheet(args.out, size=args.size)
    print(out)
    return 0


def _cmd_video(args: argparse.Namespace) -> int:
    from diffusiontalker.render.video import render_animation

    anim = _load_for_render(args)
    out = render_animation(anim, args.out, size=args.size, label=args.label)
    print(out)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from diffusiontalker.export import export_animation

    anim = _load_for_render(args)
    out = export_animation(anim, args.out, fmt=args.format)
    print(out)
    return 0


def register_cli(subparsers) -> None:
    """Add ``render contact-sheet``, ``render video`` and ``export`` to the CLI's subparsers."""
    from diffusiontalker.export import FORMATS

    r = subparsers.add_parser("render", help="render motion to video, or the head's 52 shapes to a contact sheet")
    rs = r.add_subparsers(dest="render_command", required=True)
    cs = rs.add_parser("contact-sheet", help="all 52 ARKit shapes at weight 1 in a labelled PNG grid")
    cs.add_argument("--out", required=True, type=Path, help="output .png")
    cs.add_argument("--size", type=int, default=192, help="tile size in pixels")
    cs.set_defaults(func=_cmd_contact_sheet)
    v = rs.add_parser("video", help="motion .npy (+ .json sidecar), .csv or BEAT .json -> H.264 + AAC mp4")
    v.add_argument("motion", type=Path, help="motion file written by 'generate' or 'export'")
    v.add_argument("--audio", type=Path, default=None, help="speech to mux into the video")
    v.add_argument("--out", required=True, type=Path, help="output .mp4")
    v.add_argument("--size", type=int, default=512, help="frame width and height in pixels")
    v.add_argument("--template", type=Path, default=None, help=".obj/.ply mesh for vertex animations")
    v.add_argument("--label", default=None, help="text drawn over the video")
    v.set_defaults(func=_cmd_video)

    e = subparsers.add_parser("export", help="convert motion to Live Link CSV, BEAT JSON, GLB, OBJ zip or npy")
    e.add_argument("motion", type=Path, help="motion .npy (+ .json sidecar), .csv or BEAT .json")
    e.add_argument("--format", choices=list(FORMATS), default=None, help="default: from the --out suffix")
    e.add_argument("--out", required=True, type=Path, help="output file")
    e.add_argument("--template", type=Path, default=None, help=".obj/.ply mesh for vertex animations")
    e.set_defaults(func=_cmd_export)
