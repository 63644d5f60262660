"""Convert BEAT facial takes into the common clip format.

    python -m train.prepare_beat --beat /path/to/beat_english --out data/beat [--speakers 2 4 6 8] \
        [--clip-seconds 10] [--seed 42] [--languages 0]
"""

from __future__ import annotations

import argparse
import json
import sys

from diffusiontalker.data.beat import PAPER_SPEAKERS, prepare_beat
from diffusiontalker.errors import DiffusionTalkerError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.prepare_beat", description=__doc__.split("\n\n")[0])
    ap.add_argument("--beat", required=True, help="BEAT folder (per-speaker folders of .json + .wav)")
    ap.add_argument("--out", required=True, help="output clip directory")
    ap.add_argument("--speakers", type=int, nargs="+", default=list(PAPER_SPEAKERS),
                    help="speaker ids (paper: 2 4 6 8 = scott lawrence carla catherine)")
    ap.add_argument("--clip-seconds", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=42, help="split seed (FaceDiffuser's protocol: 42)")
    ap.add_argument("--languages", type=int, nargs="+", default=[0], help="0 = English (the paper's choice)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        stats = prepare_beat(args.beat, args.out, speakers=args.speakers, clip_seconds=args.clip_seconds,
                             seed=args.seed, languages=args.languages, progress=not args.quiet)
    except DiffusionTalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
