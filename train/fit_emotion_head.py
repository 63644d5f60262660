"""Refit a trained ladder's emotion heads on prosody, on whole clips: every rung gets a head that hears the clip's
measured pitch, melody and pace (``diffusiontalker/prosody.py``) beside the speaker's identity vector.

    python -m train.fit_emotion_head --ladder runs/default/ladder --data data/synth --out runs/default/ladder-prosody

Why a second stage: the head trained with the denoiser hears pooled log-mel statistics of 2-4 s training windows; an
emotion is a property of the whole utterance, and pitch is what sets the synthetic emotions apart (on the synthetic
set the pooled statistics name 75-83 % of the validation and test clips' emotions, prosody 90-94 %). The denoiser
already learned what each emotion's weights mean (it was conditioned on the true one-hot half the time); only the
reading changes, so everything but the head is copied unchanged. Each rung's head is fitted against that rung's own
identity vectors: full-batch AdamW on the training split's whole clips plus ``--augment-copies`` augmented copies of
each (the training augmentation), ``--identity-swap`` of them heard against a random identity, as an unseen voice's
nearest match would be. The script prints each rung's validation accuracy before and after, and refuses to write
over an existing output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from diffusiontalker.checkpoint import load_checkpoint, read_ladder, save_checkpoint, write_ladder
from diffusiontalker.data.augment import augment_audio
from diffusiontalker.data.clips import read_clip, read_meta
from diffusiontalker.errors import CheckpointError, DataError
from diffusiontalker.model import TalkerModel
from diffusiontalker.prosody import PROSODY_NAMES, prosody_features
from diffusiontalker.training import fit_prosody_emotion_head


@dataclasses.dataclass
class LabelledSet:
    """Whole clips of one split: their 16 kHz audio, prosody (n, P), speaker names and emotion names."""

    audio: list[np.ndarray]
    prosody: torch.Tensor
    speakers: list[str]
    emotions: list[str]


def load_split(data: Path, split: str, augment_copies: int = 0, seed: int = 0) -> LabelledSet:
    """Every labelled clip of ``data/split`` (and ``augment_copies`` augmented copies of each, seeded). The labels
    are those the directory declares (meta.json "emotions"); a clip with another emotion is skipped."""
    declared = read_meta(data).get("emotions") or []
    if len(declared) < 2:
        raise DataError(f"{data} declares {len(declared)} emotion labels (meta.json \"emotions\"); an emotion head "
                        "needs data labelled with two or more (the synthetic set, BEAT)")
    files = sorted((data / split).glob("*.npz"))
    if not files:
        raise DataError(f"no clips in {data / split}; choose a split that exists")
    rng = np.random.default_rng(seed)
    audio, speakers, emotions = [], [], []
    for f in files:
        clip = read_clip(f)
        emotion = str(clip.get("emotion", ""))
        if emotion not in declared:
            continue
        for copy in range(1 + augment_copies):
            audio.append(clip["audio"] if copy == 0 else augment_audio(clip["audio"], rng))
            speakers.append(str(clip["speaker"]))
            emotions.append(emotion)
    if not audio:
        raise DataError(f"no clip of {data / split} has one of the emotion labels {declared}")
    prosody = torch.cat([prosody_features(torch.from_numpy(np.asarray(a, np.float32))) for a in audio])
    return LabelledSet(audio, prosody, speakers, emotions)


@torch.no_grad()
def accuracy(model: TalkerModel, data: LabelledSet, prosody_head: bool, single: bool = False) -> float:
    """How often the rung's head names the clips' emotions, hearing each for its true speaker (``single``: the
    model's one identity)."""
    names = model.cfg.emotion_names
    idx = torch.tensor([0 if single else model.identity.names.index(s) for s in data.speakers])
    identity = model.identity.embed(idx)
    hits = []
    for i, wav in enumerate(data.audio):
        if prosody_head:
            logits = model.denoiser.hear_prosody(data.prosody[i: i + 1], identity[i: i + 1])
        else:
            a = torch.from_numpy(np.asarray(wav, np.float32))[None]
            feats, mask = model.encode(a)
            logits = model.denoiser.emotion_logits(feats, mask, identity[i: i + 1])
        hits.append(names[int(logits.argmax())] == data.emotions[i])
    return float(np.mean(hits))


def refit_rung(src: Path, dst: Path, train: LabelledSet, val: LabelledSet | None, epochs: int, seed: int,
               augment_copies: int = 0, identity_swap: float = 0.1) -> dict:
    """Copy the checkpoint ``src`` to ``dst`` with a prosody emotion head fitted on ``train``; returns a summary."""
    old, cfg, meta = load_checkpoint(src)
    if not old.cfg.has_emotion:
        raise CheckpointError(f"{src} has no emotion head (its data had no emotion labels); nothing to refit")
    names = old.cfg.emotion_names
    ids = old.identity.names
    # a one-identity model (the no-identity ablation) heard every speaker as that identity in training
    single = len(ids) == 1 and not set(train.speakers) & set(ids)
    unknown = sorted({e for e in train.emotions if e not in names}
                     | (set() if single else {s for s in train.speakers if s not in ids}))
    if unknown:
        raise DataError(f"the training clips name emotions or speakers {unknown[:5]} that {src} does not know; "
                        "refit on the data the ladder was trained on")
    new_cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, emotion_features="prosody"))
    model = TalkerModel(new_cfg.model)
    state = {k: v for k, v in old.state_dict().items() if not k.startswith("denoiser.emotion_head.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(("denoiser.emotion_head.", "denoiser.prosody_")) for k in missing)
    model.denoiser.set_prosody_normalisation(train.prosody.mean(0), train.prosody.std(0))
    model.eval()
    speaker = torch.tensor([0 if single else ids.index(s) for s in train.speakers])
    labels = torch.tensor([names.index(e) for e in train.emotions])
    with torch.enable_grad():
        loss = fit_prosody_emotion_head(model, train.prosody, speaker, labels, epochs=epochs,
                                        identity_swap=identity_swap, seed=seed)
    model.eval()
    summary = {"rung": src.name, "train_loss": loss, "train_acc": accuracy(model, train, True, single)}
    if val is not None:
        summary["val_acc_before"] = accuracy(old, val, old.denoiser.emotion_features == "prosody", single)
        summary["val_acc"] = accuracy(model, val, True, single)
    meta = dict(meta)
    meta["emotion_refit"] = {"features": list(PROSODY_NAMES), "clips": len(train.audio), "epochs": epochs,
                             "augment_copies": augment_copies, "identity_swap": identity_swap,
                             **{k: v for k, v in summary.items() if k != "rung"}}
    save_checkpoint(model, new_cfg, dst, meta=meta)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ladder", required=True, help="a ladder directory (ladder.json) or one checkpoint directory")
    p.add_argument("--data", required=True, help="the clip directory the ladder was trained on (emotion labels)")
    p.add_argument("--out", required=True, help="a new directory for the refitted ladder (never overwritten)")
    p.add_argument("--split", default="train")
    p.add_argument("--val-split", default="val", help="split to report accuracy on ('' to skip)")
    p.add_argument("--augment-copies", type=int, default=1, help="augmented copies of each training clip")
    p.add_argument("--epochs", type=int, default=600)
    p.add_argument("--identity-swap", type=float, default=0.1,
                   help="fraction of clips heard against a random other identity each epoch (unseen voices)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not 0.0 <= args.identity_swap <= 1.0 or args.epochs < 1 or args.augment_copies < 0:
        p.error("--identity-swap must be in [0, 1], --epochs >= 1 and --augment-copies >= 0")
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        print(f"error: {out} exists and is not empty; choose a new --out (nothing was written)", file=sys.stderr)
        return 2
    try:
        rungs = read_ladder(args.ladder)
        manifest = Path(args.ladder) / "ladder.json"
        teacher = json.loads(manifest.read_text())["teacher"] if manifest.exists() else None
        data = Path(args.data)
        train = load_split(data, args.split, args.augment_copies, args.seed)
        val = load_split(data, args.val_split) if args.val_split else None
        copies = f"{args.augment_copies} augmented cop{'y' if args.augment_copies == 1 else 'ies'} of each"
        print(f"prosody of {len(train.audio)} training clips ({copies})"
              + (f" and {len(val.audio)} {args.val_split} clips" if val else ""))
        names = {}
        summaries = []
        for steps, src in sorted(rungs.items(), reverse=True):
            dst = out / src.name if manifest.exists() else out
            s = refit_rung(src, dst, train, val, args.epochs, args.seed, args.augment_copies, args.identity_swap)
            names[steps] = src.name
            summaries.append(s)
            line = f"{src.name}: train accuracy {s['train_acc']:.3f}"
            if "val_acc" in s:
                line += f", {args.val_split} accuracy {s['val_acc_before']:.3f} -> {s['val_acc']:.3f}"
            print(line, flush=True)
    except (CheckpointError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if manifest.exists():
        write_ladder(out, names, teacher_steps=teacher)
    (out / "emotion_refit.json").write_text(json.dumps({"ladder": str(args.ladder), "data": str(args.data),
                                                         "rungs": summaries}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
