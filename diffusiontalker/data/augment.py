"""Audio augmentation for training: the same speech louder, quieter, noisier, tinnier or in a room must give the
same motion. Every transform keeps the length unchanged (the motion is aligned sample-for-frame)."""

from __future__ import annotations

import numpy as np

from diffusiontalker.audio import SAMPLE_RATE


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0


def _speech_rms(x: np.ndarray) -> float:
    """RMS over the louder half of 20 ms frames (ignores leading/trailing silence)."""
    hop = SAMPLE_RATE // 50
    n = len(x) // hop
    if n < 2:
        return _rms(x)
    frames = np.sqrt(np.mean(x[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1))
    loud = np.sort(frames)[n // 2:]
    return float(np.sqrt(np.mean(loud ** 2)))


def _tilt(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """First-order spectral tilt y[n] = x[n] - b·x[n-1] (b>0 brighter, b<0 duller), loudness kept."""
    b = float(rng.uniform(-0.6, 0.8))
    y = x.copy()
    y[1:] -= b * x[:-1]
    r = _rms(y)
    return y * (_rms(x) / r) if r > 0 else y


def _reverb(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small synthetic room: exponentially decaying noise impulse response (RT60 0.1–0.6 s), wet/dry mix."""
    from scipy.signal import fftconvolve

    rt60 = float(rng.uniform(0.1, 0.6))
    n = int(min(rt60, 0.5) * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    ir[0] = 0.0
    ir /= np.sqrt(np.sum(ir ** 2)) + 1e-12
    wet = fftconvolve(x, ir)[: len(x)]
    mix = float(rng.uniform(0.1, 0.45))
    return (1 - mix) * x + mix * wet * (_rms(x) / (_rms(wet) + 1e-12))


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink-ish or brown-ish noise of unit RMS."""
    kind = int(rng.integers(3))
    w = rng.standard_normal(n)
    if kind == 1:  # pink-ish: average of white and integrated white
        b = np.cumsum(w)
        b -= np.convolve(b, np.ones(801) / 801, mode="same")
        w = w / (_rms(w) + 1e-12) + b / (_rms(b) + 1e-12)
    elif kind == 2:  # brown-ish (low rumble), high-passed a little
        b = np.cumsum(w)
        w = b - np.convolve(b, np.ones(401) / 401, mode="same")
    return w / (_rms(w) + 1e-12)


def augment_audio(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random gain (±20 dB, never clipping), spectral tilt (p=0.5), reverb (p=0.3) and an additive noise floor at
    15–50 dB SNR (p=0.7). Returns float32 of the SAME length as ``audio`` (N,)."""
    x = np.asarray(audio, dtype=np.float64).copy()
    n = len(x)
    if n == 0:
        return x.astype(np.float32)
    if rng.random() < 0.5:
        x = _tilt(x, rng)
    if rng.random() < 0.3 and n > 16:
        x = _reverb(x, rng)
    peak = float(np.max(np.abs(x)))
    gain_db = float(rng.uniform(-20.0, 20.0))
    if peak > 0:
        gain_db = min(gain_db, 20 * np.log10(0.98 / peak))
    x = x * 10 ** (gain_db / 20)
    if rng.random() < 0.7:
        snr_db = float(rng.uniform(15.0, 50.0))
        level = _speech_rms(x)
        if level > 0:
            x = x + _noise(n, rng) * level * 10 ** (-snr_db / 20)
    peak = float(np.max(np.abs(x)))
    if peak > 1.0:
        x /= peak
    return x.astype(np.float32)
