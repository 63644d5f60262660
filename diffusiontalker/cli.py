"""Command line: ``python -m diffusiontalker generate|info|render|export ...``.

User mistakes (bad audio, a missing checkpoint, an existing output) end with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from diffusiontalker.errors import DiffusionTalkerError

DEFAULT_CHECKPOINT = os.environ.get("DIFFUSIONTALKER_CHECKPOINT", "checkpoints/default")


def _parse_identity(text: str, what: str = "identity") -> str | dict[str, float] | None:
    """'auto' | 'none' | 'name' | 'name1=0.7,name2=0.3' (a mix); the same syntax serves --emotion."""
    if text == "none":
        return None
    if "=" not in text:
        return text
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        try:
            mix[name.strip()] = float(weight)
        except ValueError:
            raise DiffusionTalkerError(f"bad {what} mix {text!r}; write it as name1=0.7,name2=0.3") from None
    return mix


def atomic_save(path: Path, write, overwrite: bool) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``; refuse to replace an existing file unless overwrite."""
    if path.exists() and not overwrite:
        raise DiffusionTalkerError(f"{path} exists; pass --overwrite to replace it")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def cmd_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from diffusiontalker.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(args.checkpoint)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    identity = _parse_identity(args.identity)
    emotion = _parse_identity(args.emotion, "emotion") if args.emotion != "none" else "auto"
    files = [Path(a) for a in args.audio]
    written = []
    for path in tqdm(files, desc="generating", disable=len(files) < 2 or args.quiet):
        anims = pipe(path, steps=args.steps, identity=identity, num_samples=args.samples, seed=args.seed,
                     max_seconds=args.max_seconds, emotion=emotion)
        for anim in anims:
            stem = f"{path.stem}_seed{anim.seed}" if args.samples > 1 else path.stem
            npy = out_dir / f"{stem}.npy"
            meta = anim.metadata() | {"audio": str(path), "checkpoint": str(args.checkpoint)}
            atomic_save(npy, lambda p, a=anim: np.save(p, a.values), args.overwrite)
            atomic_save(npy.with_suffix(".json"), lambda p, m=meta: p.write_text(json.dumps(m, indent=2)),
                        args.overwrite)
            written.append(npy)
            if not args.quiet:
                emo = f", emotion {anim.emotion}" if anim.emotion else ""
                print(f"{npy}  {anim.num_frames} frames, identity {anim.identity}{emo}, "
                      f"{anim.timings.get('total', 0):.2f} s")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from diffusiontalker.checkpoint import load_checkpoint, read_config, read_ladder

    rungs = read_ladder(args.checkpoint)
    for steps, path in sorted(rungs.items(), reverse=True):
        model, cfg, meta = load_checkpoint(path)  # validates the weights too: files, shapes, NaN, no pickle
        m = cfg.model
        params = sum(p.numel() for p in model.parameters())
        print(f"{path}: {steps} steps, {m.kind} output ({m.motion_dim} channels, {m.fps} fps), encoder {m.encoder}, "
              f"d_model {m.d_model} x {m.n_layers} layers, identities {m.identity_names}, "
              f"emotions {m.emotion_names if m.has_emotion else 'none'}, {params:,} parameters")
    if args.json:
        cfg, meta = read_config(rungs[max(rungs)])
        print(json.dumps({"config": cfg.to_dict(), "meta": meta, "steps": sorted(rungs)}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffusiontalker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="speech file(s) -> motion .npy + .json sidecar")
    g.add_argument("audio", nargs="+", help="wav/flac/ogg/mp3/m4a files")
    g.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="checkpoint or ladder directory")
    g.add_argument("--steps", type=int, default=None, help="denoising steps (default 8 when available)")
    g.add_argument("--identity", default="auto", help="'auto', 'none', a name, or a mix like ava=0.5,ben=0.5")
    g.add_argument("--emotion", default="auto",
                   help="models with an emotion head: 'auto' (read from the audio), a name, or a mix like happy=0.5,"
                        "neutral=0.5")
    g.add_argument("--samples", type=int, default=1, help="diversity samples per file (seeds seed..seed+n-1)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--max-seconds", type=float, default=None, help="refuse longer audio (default 600)")
    g.add_argument("--out", default="outputs", help="output directory")
    g.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=cmd_generate)

    i = sub.add_parser("info", help="print a checkpoint's configuration")
    i.add_argument("checkpoint", nargs="?", default=DEFAULT_CHECKPOINT)
    i.add_argument("--json", action="store_true", help="also print the full config as JSON")
    i.set_defaults(func=cmd_info)

    # --- render / export commands ---
    try:
        from diffusiontalker.render import register_cli
    except ImportError:  # rendering extras not importable: generate/info still work
        register_cli = None
    if register_cli is not None:
        register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DiffusionTalkerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
