"""Turn blendshape clips into vertex clips on the procedural head (offsets from its neutral mesh), so the
VOCASET/FLAME-style vertex path can be trained and tested without licensed data.

    python -m train.make_vertex_clips --src data/synth --out data/synth-vertex --max-clips 240

Vertex clips are large (T x 3V floats), so only take 0 of each utterance and at most ``--max-clips`` train clips
(and a tenth of that for val/test) are converted. The head's faces are written to ROOT/faces.npy for rendering.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from diffusiontalker.arkit import ARKIT_52, reorder
from diffusiontalker.data.clips import compute_norm, read_clip, read_meta, write_clip, write_meta
from diffusiontalker.render.rig import load_head


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", required=True, help="blendshape clip directory")
    p.add_argument("--out", required=True, help="vertex clip directory to write")
    p.add_argument("--max-clips", type=int, default=240, help="train clips to convert (val/test: a tenth each)")
    args = p.parse_args(argv)
    src, out = Path(args.src), Path(args.out)
    meta = read_meta(src)
    if meta["kind"] != "blendshape":
        print(f"error: {src} holds {meta['kind']} clips; give a blendshape clip directory", file=sys.stderr)
        return 2
    head = load_head()
    neutral = head.neutral.astype(np.float32)  # (V, 3)
    counts = {}
    for split in ("train", "val", "test"):
        files = sorted((src / split).glob("*.npz"))
        limit = args.max_clips if split == "train" else max(1, args.max_clips // 10)
        # spread the selection over speakers: every k-th file of the sorted list
        files = files[:: max(1, len(files) // limit)][:limit]
        for f in tqdm(files, desc=f"vertex {split}"):
            clip = read_clip(f)
            motion = clip["motion"][0] if clip["motion"].ndim == 3 else clip["motion"]  # (T, D)
            weights = reorder(motion, list(clip["names"]), ARKIT_52)  # (T, 52) by name
            verts = head.apply(weights)  # (T, V, 3)
            offsets = (verts - neutral[None]).reshape(len(weights), -1)  # (T, 3V)
            write_clip(out / split / f.name, audio=clip["audio"], motion=offsets, kind="vertex", template=neutral,
                       speaker=clip["speaker"], emotion=clip.get("emotion", "neutral"))
        counts[split] = len(files)
    write_meta(out, kind="vertex", names=None, speakers=meta["speakers"], source="synthetic-vertex",
               heldout_speakers=[], head_vertices=int(neutral.shape[0]), derived_from=str(src),
               emotions=list(meta.get("emotions", [])))
    np.save(out / "faces.npy", head.faces.astype(np.int32))
    compute_norm(out)
    (out / "stats.json").write_text(json.dumps({"clips": sum(counts.values()), "splits": counts,
                                                "vertices": int(neutral.shape[0])}, indent=2))
    print(f"wrote {sum(counts.values())} vertex clips to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
