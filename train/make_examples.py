"""Synthesise the app's example clips (``assets/examples/*.wav``) with the synthetic data set's espeak-ng voices.

    python -m train.make_examples --out assets/examples

Three speakers of the default model's training set (the first ones of the synthetic speaker table) and one
held-out voice that no training speaker uses, each saying a fixed sentence: 16 kHz mono 16-bit wavs of 3–6 s,
named ``<speaker>.wav`` and ``heldout_<speaker>.wav``. Deterministic: speech is synthesised in one fresh process
in a fixed order (espeak-ng keeps state between syntheses), so the same command writes the same bytes.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffusiontalker.audio import SAMPLE_RATE, save_wav
from diffusiontalker.data.synthetic import ClipSpec, make_speakers, render_clip, speak
from diffusiontalker.errors import DataError, DiffusionTalkerError

LEAD_S, TRAIL_S = 0.25, 0.35  # silence before/after the speech, so the face starts and ends at rest
MIN_S, MAX_S = 3.0, 6.0  # wanted clip length


@dataclass(frozen=True)
class Example:
    """One example clip: a synthetic speaker (training or held-out) and the sentence it says."""

    speaker: str
    text: str
    heldout: bool = False

    @property
    def filename(self) -> str:
        return f"heldout_{self.speaker}.wav" if self.heldout else f"{self.speaker}.wav"


# Speakers: the first three of the training table (make_speakers) and the first held-out voice.
EXAMPLES: tuple[Example, ...] = (
    Example("ava", "Hello there! Watch my lips closely while I read this sentence out loud."),
    Example("ben", "The quick brown fox jumps over the lazy dog, and then it takes a nap."),
    Example("cleo", "Peter picked a pretty bunch of purple flowers by the old bridge."),
    Example("quinn", "I was never heard in training, but my mouth should still follow the words.", heldout=True),
)


def example_specs(examples: tuple[Example, ...] = EXAMPLES) -> list[ClipSpec]:
    """The clip specs (speaker voice + style, text, silences) of the examples, in synthesis order."""
    names = [e.speaker for e in examples]
    main, held = make_speakers(16, heldout=6)  # the named speakers; a speaker's style depends on its name only
    by_name = {s.name: s for s in main} | {f"heldout:{s.name}": s for s in held}
    specs = []
    for i, e in enumerate(examples):
        key = f"heldout:{e.speaker}" if e.heldout else e.speaker
        if key not in by_name:
            kind = "held-out" if e.heldout else "training"
            known = [k.split(":", 1)[-1] for k in by_name if k.startswith("heldout:") == e.heldout]
            raise DataError(f"no {kind} synthetic speaker {e.speaker!r}; choose from {known}")
        specs.append(ClipSpec(index=i, speaker=by_name[key], text=e.text, sentence_id=i, split="example",
                              emotion="neutral", lead=LEAD_S, trail=TRAIL_S, seed=i, takes=1))
    if len(set(names)) != len(names):
        raise DataError(f"example speakers must be distinct, got {names}")
    return specs


def synthesise(specs: list[ClipSpec]) -> list[np.ndarray]:
    """16 kHz float audio per spec (lead silence + speech + trail silence), through the data set's own path.

    The speech is made in one fresh spawned process, in order, like ``generate_dataset`` does: espeak-ng's state
    carries over between syntheses, so this is what makes the bytes repeatable.
    """
    with mp.get_context("spawn").Pool(1) as pool:
        speeches = pool.map(speak, specs, chunksize=len(specs))
    out = []
    for spec, speech in zip(specs, speeches):
        if len(speech.audio) == 0 or not speech.phones:
            raise DataError(f"espeak-ng produced no speech for {spec.text!r} ({spec.speaker.voice})")
        out.append(render_clip(spec, speech)["audio"])  # (N,) float32 at SAMPLE_RATE
    return out


def make_examples(out: str | Path, examples: tuple[Example, ...] = EXAMPLES) -> list[Path]:
    """Write the example wavs into ``out``; returns their paths. Raises DataError when a clip is not 3–6 s."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    specs = example_specs(examples)
    paths = []
    for e, audio in zip(examples, synthesise(specs)):
        seconds = len(audio) / SAMPLE_RATE
        if not MIN_S <= seconds <= MAX_S:
            raise DataError(f"example {e.filename} lasts {seconds:.2f} s; shorten or lengthen its sentence to "
                            f"{MIN_S:g}-{MAX_S:g} s")
        paths.append(save_wav(out / e.filename, audio, SAMPLE_RATE))
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.make_examples", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="assets/examples", help="folder for the wavs (default: assets/examples)")
    args = ap.parse_args(argv)
    try:
        paths = make_examples(args.out)
    except DiffusionTalkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(f"{p}  {p.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
