"""Generate the synthetic speech → ARKit-52 data set (espeak-ng phonemes → visemes → curves).

    python -m train.make_synthetic --out data/synth --speakers 10 --clips-per-speaker 200 --seed 0 \
        [--heldout-speakers 2] [--takes 4] [--workers 2] [--emotions neutral happy sad angry] [--plot docs/x.png]

Deterministic for a seed (speech is synthesised in one process in a fixed order). Writes meta.json, norm.npz,
stats.json and train/val/test (+ test_heldout) clip folders; see diffusiontalker/data/clips.py for the format.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffusiontalker.data.synthetic import EMOTIONS, generate_dataset, plot_clip
from diffusiontalker.errors import DiffusionTalkerError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.make_synthetic", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output clip directory")
    ap.add_argument("--speakers", type=int, default=10, help="training speakers (named, fixed styles)")
    ap.add_argument("--clips-per-speaker", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--heldout-speakers", type=int, default=0,
                    help="extra speakers with unseen voices -> test_heldout/")
    ap.add_argument("--takes", type=int, default=4, help="motion takes per utterance (K)")
    ap.add_argument("--workers", type=int, default=1, help="processes for rendering/writing (speech stays in one)")
    ap.add_argument("--emotions", nargs="+", default=list(EMOTIONS), choices=list(EMOTIONS))
    ap.add_argument("--plot", default=None, help="also plot the first training clip to this PNG")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        print(f"error: {out} exists and is not empty; choose a new --out", file=sys.stderr)
        return 2
    try:
        stats = generate_dataset(str(out), speakers=args.speakers, clips_per_speaker=args.clips_per_speaker,
                                 seed=args.seed, heldout_speakers=args.heldout_speakers, takes=args.takes,
                                 workers=args.workers, emotions=args.emotions, progress=not args.quiet)
        if args.plot:
            first = sorted((out / "train").glob("*.npz"))[0]
            Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
            plot_clip(str(first), args.plot)
    except DiffusionTalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {k: stats[k] for k in ("clips", "hours", "splits", "unknown_phoneme_count", "clips_per_second")}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
