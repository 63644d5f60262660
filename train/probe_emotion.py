"""Can the audio alone tell a clip's emotion? A linear probe on utterance-level features.

    python -m train.probe_emotion --data data/synth [--train-split train --test-split val] [--out probe.json]

Emotion labels move the mouth in the synthetic set (a happy clip smiles, a sad one frowns), so a model that cannot
hear the emotion pays for it in lip error (``train.evaluate`` splits lip error by emotion). This probe asks whether
the information is there at all, independently of any trained model: per clip it pools

- the log-mel spectrum the ``mel`` encoder sees (its level normalisation included): mean and std per bin over the
  clip's frames ("spectrum"), and
- prosody: median and spread of log f0 over voiced frames (YIN), the rate of energy onsets per second (pace) and the
  voiced fraction ("prosody"),

centres every feature on the clip's speaker's training mean (the speaker is known when a model generates: its
identity), standardises, and fits a multinomial logistic regression (L2, LBFGS) on one split, scored on another.
The result is a lower bound on what the audio reveals: a linear read-out of fixed features.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from diffusiontalker.audio import SAMPLE_RATE
from diffusiontalker.config import ModelConfig
from diffusiontalker.data.clips import read_clip
from diffusiontalker.encoders import MEL_HOP, MelEncoder
from diffusiontalker.errors import DataError

SPECTRUM, PROSODY = "spectrum", "prosody"


def clip_features(audio: np.ndarray, encoder: MelEncoder) -> dict[str, np.ndarray]:
    """Utterance-level features of one clip (16 kHz audio): {"spectrum": (2M,), "prosody": (4,)}."""
    import librosa

    audio = np.asarray(audio, dtype=np.float32)
    with torch.no_grad():
        lm = encoder.log_mel(torch.from_numpy(audio)[None], torch.tensor([len(audio)]))[0].numpy()  # (M, N)
    energy = lm.mean(0)
    loud = energy > energy.mean()
    f0 = librosa.yin(audio, fmin=60.0, fmax=400.0, sr=SAMPLE_RATE, frame_length=1024, hop_length=MEL_HOP)
    n = min(len(f0), len(loud))
    voiced = np.log(f0[:n][loud[:n]]) if loud[:n].any() else np.log(f0[:n])
    onsets = float((loud[1:] & ~loud[:-1]).sum()) / (len(audio) / SAMPLE_RATE)
    return {SPECTRUM: np.concatenate([lm.mean(1), lm.std(1)]),
            PROSODY: np.array([np.median(voiced), voiced.std(), onsets, loud.mean()])}


def load_split(data: Path, split: str, encoder: MelEncoder) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """Features (group -> (n, F)), emotion labels and speakers of every clip of ``data/split``."""
    files = sorted((data / split).glob("*.npz"))
    if not files:
        raise DataError(f"no clips in {data / split}; choose a split that exists")
    feats: dict[str, list[np.ndarray]] = {SPECTRUM: [], PROSODY: []}
    labels, speakers = [], []
    for f in files:
        clip = read_clip(f)
        emotion = str(clip.get("emotion", ""))
        if not emotion:
            raise DataError(f"{f} has no emotion label; the probe needs labelled clips (synthetic, BEAT)")
        for k, v in clip_features(clip["audio"], encoder).items():
            feats[k].append(v)
        labels.append(emotion)
        speakers.append(str(clip["speaker"]))
    return {k: np.stack(v) for k, v in feats.items()}, labels, speakers


def speaker_centre(x: np.ndarray, speakers: list[str], means: dict[str, np.ndarray]) -> np.ndarray:
    """Subtract each clip's speaker mean (the global mean for a speaker the training split does not have)."""
    fallback = np.mean(list(means.values()), axis=0)
    return x - np.stack([means.get(s, fallback) for s in speakers])


def fit_logistic(x: np.ndarray, y: np.ndarray, classes: int, l2: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression by LBFGS: weights (F, C) and bias (C,)."""
    xt, yt = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y)
    w = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def probe(train: tuple, test: tuple, groups: tuple[str, ...]) -> dict:
    """Fit on ``train`` and score on ``test`` (each the output of :func:`load_split`) using feature ``groups``."""
    (ftr, ytr, str_), (fte, yte, ste) = train, test
    xtr = np.concatenate([ftr[g] for g in groups], axis=1)
    xte = np.concatenate([fte[g] for g in groups], axis=1)
    means = {s: xtr[[i for i, t in enumerate(str_) if t == s]].mean(0) for s in set(str_)}
    xtr, xte = speaker_centre(xtr, str_, means), speaker_centre(xte, ste, means)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-8
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    classes = sorted(set(ytr))
    w, b = fit_logistic(xtr, np.array([classes.index(e) for e in ytr]), len(classes))
    pred = [classes[i] for i in (torch.as_tensor(xte, dtype=torch.float64) @ w + b).argmax(1).tolist()]
    yte_arr, pred_arr = np.array(yte), np.array(pred)
    majority = Counter(ytr).most_common(1)[0][0]
    return {"features": list(groups), "accuracy": float((pred_arr == yte_arr).mean()),
            "majority_class": majority, "majority_accuracy": float((yte_arr == majority).mean()),
            "recall": {e: float((pred_arr[yte_arr == e] == e).mean()) for e in classes if (yte_arr == e).any()},
            "clips": {"train": len(ytr), "test": len(yte)}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a clip directory with emotion labels (e.g. data/synth)")
    p.add_argument("--train-split", default="train")
    p.add_argument("--test-split", default="val")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    encoder = MelEncoder(ModelConfig())
    try:
        train = load_split(Path(args.data), args.train_split, encoder)
        test = load_split(Path(args.data), args.test_split, encoder)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if len(set(train[1])) < 2:
        print(f"error: the {args.train_split} split has one emotion only ({train[1][0]}); nothing to probe",
              file=sys.stderr)
        return 2
    results = [probe(train, test, g) for g in ((SPECTRUM, PROSODY), (SPECTRUM,), (PROSODY,))]
    for r in results:
        recall = ", ".join(f"{e} {v:.2f}" for e, v in r["recall"].items())
        print(f"{' + '.join(r['features']):20s} accuracy {r['accuracy']:.3f} (majority class "
              f"{r['majority_accuracy']:.3f}); recall: {recall}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"data": args.data, "train_split": args.train_split,
                                              "test_split": args.test_split, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
