"""Audio loading and validation: anything a user uploads becomes mono float32 at 16 kHz, or an ``AudioError``.

Constants live here (after whisper's habit) so every module agrees on rates:
``SAMPLE_RATE`` of the audio the encoders see, ``FPS`` of the motion the model outputs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from diffusiontalker.errors import AudioError

SAMPLE_RATE = 16_000  # Hz, what every audio encoder consumes
FPS = 30  # motion frames per second, for blendshapes and vertices alike
MIN_SECONDS = 0.2
DEFAULT_MAX_SECONDS = float(os.environ.get("DIFFUSIONTALKER_MAX_SECONDS", 600.0))

_NATIVE_EXTS = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".opus"}


def num_frames(num_samples: int, sample_rate: int = SAMPLE_RATE, fps: int = FPS) -> int:
    """Motion frames that cover ``num_samples`` of audio (rounded to the nearest frame, at least 1)."""
    return max(1, int(round(num_samples * fps / sample_rate)))


def _decode_with_ffmpeg(path: Path, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode any container ffmpeg knows (m4a/aac, video files, ...) to 16 kHz mono via imageio-ffmpeg's binary.

    With ``max_seconds`` at most a little more than that is decoded, so an hour-long upload costs no more than the
    limit does (the caller then refuses it as too long).
    """
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # pragma: no cover - depends on the install
        exe = shutil.which("ffmpeg")
    if not exe:
        raise AudioError(f"cannot decode {path.name}: install imageio-ffmpeg (pip) or ffmpeg to read this format")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "decoded.wav"
        limit = ["-t", f"{max_seconds + 1.0:.3f}"] if max_seconds is not None else []
        try:
            proc = subprocess.run(
                [exe, "-nostdin", "-v", "error", "-y", "-i", str(path), "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE),
                 *limit, "-f", "wav", str(out)],
                capture_output=True, timeout=300,
            )
        except subprocess.TimeoutExpired:
            raise AudioError(f"decoding {path.name} took over 300 s; convert it to wav and try again") from None
        if b"does not contain any stream" in proc.stderr or b"matches no streams" in proc.stderr:
            raise AudioError(f"{path.name} has no audio track; give a sound file (wav, flac, ogg, mp3 or m4a)")
        if proc.returncode != 0 or not out.exists() or out.stat().st_size <= 44:
            raise AudioError(
                f"could not decode {path.name} as audio (is it a sound file?); use wav, flac, ogg, mp3 or m4a")
        import soundfile as sf

        data, sr = sf.read(str(out), dtype="float32", always_2d=True)
    return data, sr


def _too_long(max_seconds: float, seconds: float | None = None) -> AudioError:
    """The refusal of audio over the length limit (``seconds`` None: longer than the part decoded)."""
    length = f"audio is {seconds:.1f} s long, over" if seconds is not None else "audio is longer than"
    return AudioError(f"{length} the {max_seconds:.0f} s limit; cut it into shorter pieces or raise the limit "
                      f"(DIFFUSIONTALKER_MAX_SECONDS)")


def _read_file(path: Path, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    if not path.exists():
        raise AudioError(f"audio file not found: {path}; check the path")
    if path.is_dir():
        raise AudioError(f"{path} is a directory; give an audio file (wav, flac, ogg, mp3 or m4a)")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file {path.name} is empty (0 bytes); record or upload the speech again")
    import soundfile as sf

    if path.suffix.lower() in _NATIVE_EXTS:
        try:
            info = sf.info(str(path))
        except Exception:
            info = None  # not readable natively: fall through to ffmpeg, which also reads mislabelled files
        if info is not None:
            if max_seconds is not None and info.samplerate > 0 and info.frames / info.samplerate > max_seconds:
                raise _too_long(max_seconds, info.frames / info.samplerate)  # refused before decoding it all
            try:
                data, sr = sf.read(str(path), dtype="float32", always_2d=True)
                return data, sr
            except Exception:
                pass
    data, sr = _decode_with_ffmpeg(path, max_seconds)
    if max_seconds is not None and len(data) > max_seconds * sr:
        raise _too_long(max_seconds)
    return data, sr


def resample(audio: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (librosa's soxr_hq) of a 1-D float32 signal."""
    if sr_in == sr_out:
        return audio.astype(np.float32, copy=False)
    import librosa

    return librosa.resample(audio.astype(np.float32), orig_sr=sr_in, target_sr=sr_out, res_type="soxr_hq")


def load_audio(source: str | os.PathLike | np.ndarray, sr: int | None = None,
               max_seconds: float | None = None, min_seconds: float = MIN_SECONDS) -> np.ndarray:
    """Load speech as mono float32 at :data:`SAMPLE_RATE`.

    Args:
        source: a file path (wav/flac/ogg/mp3 natively; m4a and others through the imageio-ffmpeg binary) or an
            array of samples, shape (N,) or (N, C) / (C, N) for multi-channel audio.
        sr: sample rate of ``source`` when it is an array (required then); ignored for files.
        max_seconds: refuse longer audio (default ``DIFFUSIONTALKER_MAX_SECONDS`` or 600 s).
        min_seconds: refuse shorter audio (default 0.2 s).

    Raises:
        AudioError: missing/empty/undecodable file, zero length, too short or too long, NaN/Inf samples.
    """
    max_seconds = DEFAULT_MAX_SECONDS if max_seconds is None else max_seconds
    if isinstance(source, np.ndarray):
        if sr is None:
            raise AudioError("an audio array needs its sample rate: call load_audio(samples, sr=...)")
        data = np.asarray(source)
        if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
            raise AudioError(f"audio array must hold integer or float samples, got dtype {data.dtype}")
        if data.ndim == 2 and data.shape[0] < data.shape[1] and data.shape[0] <= 16:
            data = data.T  # (C, N) -> (N, C)
        if data.ndim == 1:
            data = data[:, None]
        if data.ndim != 2:
            raise AudioError(f"audio array must be 1-D or 2-D (samples x channels), got shape {data.shape}")
        if np.issubdtype(data.dtype, np.integer):
            data = data.astype(np.float32) / float(np.iinfo(data.dtype).max)
        data = data.astype(np.float32, copy=False)
        rate = int(sr)
        name = "audio array"
    else:
        path = Path(source)
        data, rate = _read_file(path, max_seconds)
        name = path.name
    if rate <= 0:
        raise AudioError(f"{name} has an invalid sample rate {rate}")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioError(f"{name} holds no samples (zero length); give at least {min_seconds} s of speech")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{name} contains NaN or infinite samples; re-export the audio from your editor")
    seconds = data.shape[0] / rate
    if seconds < min_seconds:
        raise AudioError(f"audio is {seconds:.2f} s long; give at least {min_seconds} s of speech")
    if seconds > max_seconds:
        raise _too_long(max_seconds, seconds)
    full = float(np.max(np.abs(data)))
    if full > 1.0:  # float files may exceed full scale: scale first, so the mix-down cannot overflow float32
        data = data / np.float32(full)
    mono = data.mean(axis=1, dtype=np.float64).astype(np.float32)
    mono = resample(mono, rate, SAMPLE_RATE)
    peak = float(np.max(np.abs(mono))) if mono.size else 0.0
    if peak > 1.0:  # float files may exceed full scale; keep the shape, bring into [-1, 1]
        mono = mono / peak
    return np.ascontiguousarray(mono, dtype=np.float32)


def save_wav(path: str | os.PathLike, audio: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    """Write mono float audio as 16-bit PCM wav (the format every tool and browser reads)."""
    import soundfile as sf

    path = Path(path)
    sf.write(str(path), np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0), sr, subtype="PCM_16")
    return path
