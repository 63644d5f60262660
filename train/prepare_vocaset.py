"""Convert VOCASET (raw release or vertices_npy/ + wav/ layout) into the common clip format.

    python -m train.prepare_vocaset --vocaset /path/to/vocaset --out data/vocaset \
        [--lip-indices lips.txt] [--upper-face-indices upper.txt]

The lip / upper-face vertex index files (one FLAME vertex index per line) are used by the metrics; they are not
shipped with this project: supply your own.
"""

from __future__ import annotations

import argparse
import json
import sys

from diffusiontalker.data.vocaset import prepare_vocaset
from diffusiontalker.errors import DiffusionTalkerError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.prepare_vocaset", description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocaset", required=True, help="VOCASET folder (templates.pkl + data_verts.npy or vertices_npy/)")
    ap.add_argument("--out", required=True, help="output clip directory")
    ap.add_argument("--lip-indices", default=None, help="lip vertex indices, one per line (for LVE)")
    ap.add_argument("--upper-face-indices", default=None, help="upper-face vertex indices, one per line (for FDD)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        stats = prepare_vocaset(args.vocaset, args.out, lip_indices=args.lip_indices,
                                upper_face_indices=args.upper_face_indices, progress=not args.quiet)
    except DiffusionTalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
