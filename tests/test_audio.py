"""load_audio: every AudioError case with its message, and real files of each supported format decoding right."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from diffusiontalker.audio import FPS, SAMPLE_RATE, load_audio, num_frames, resample, save_wav
from diffusiontalker.errors import AudioError


def tone(freq: float = 440.0, seconds: float = 1.0, sr: int = SAMPLE_RATE, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(x: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Frequency of the strongest spectral peak (Hann-windowed, 4x zero-padded FFT)."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=4 * len(x)))
    return float(np.argmax(spec) * sr / (4 * len(x)))


def ffmpeg_encode(src: Path, dst: Path, *codec: str) -> Path:
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([exe, "-nostdin", "-v", "error", "-y", "-i", str(src), *codec, str(dst)], check=True,
                   capture_output=True, timeout=60)
    assert dst.stat().st_size > 0
    return dst


# --- errors -----------------------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"audio file not found: .*nope\.wav; check the path"):
        load_audio(tmp_path / "nope.wav")


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(AudioError, match="is a directory"):
        load_audio(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty.wav is empty \(0 bytes\)"):
        load_audio(path)


@pytest.mark.parametrize("name", ["garbage.wav", "garbage.m4a"])
def test_undecodable_bytes(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not audio at all, just some text pretending to be a sound file\n" * 40)
    with pytest.raises(AudioError, match=rf"could not decode {name} as audio.*wav, flac, ogg, mp3 or m4a"):
        load_audio(path)


def test_zero_length_file(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(str(path), np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    assert path.stat().st_size > 0  # a valid header with no samples
    with pytest.raises(AudioError, match=r"zero.wav holds no samples \(zero length\)"):
        load_audio(path)


def test_zero_length_array():
    with pytest.raises(AudioError, match=r"holds no samples \(zero length\)"):
        load_audio(np.zeros(0, dtype=np.float32), sr=SAMPLE_RATE)


@pytest.mark.parametrize("seconds", [0.05, 0.19])
def test_too_short(tmp_path, seconds):
    path = save_wav(tmp_path / "short.wav", tone(seconds=seconds))
    with pytest.raises(AudioError, match=rf"audio is {seconds:.2f} s long; give at least 0.2 s of speech"):
        load_audio(path)


def test_minimum_length_is_accepted():
    assert len(load_audio(tone(seconds=0.2), sr=SAMPLE_RATE)) == int(0.2 * SAMPLE_RATE)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_array(bad):
    x = tone()
    x[100] = bad
    with pytest.raises(AudioError, match="contains NaN or infinite samples"):
        load_audio(x, sr=SAMPLE_RATE)


def test_non_finite_samples_file(tmp_path):
    x = tone()
    x[5000] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), x, SAMPLE_RATE, subtype="FLOAT")  # float wav keeps the NaN
    with pytest.raises(AudioError, match="nan.wav contains NaN or infinite samples"):
        load_audio(path)


def test_too_long(tmp_path):
    path = save_wav(tmp_path / "long.wav", tone(seconds=2.5))
    with pytest.raises(AudioError, match=r"audio is 2.5 s long, over the 2 s limit; cut it into shorter pieces"):
        load_audio(path, max_seconds=2.0)
    assert len(load_audio(path, max_seconds=3.0)) == int(2.5 * SAMPLE_RATE)


def test_array_needs_sample_rate():
    with pytest.raises(AudioError, match=r"needs its sample rate: call load_audio\(samples, sr=...\)"):
        load_audio(tone())


def test_array_with_three_dims():
    with pytest.raises(AudioError, match="must be 1-D or 2-D"):
        load_audio(np.zeros((2, 2, 4000), dtype=np.float32), sr=SAMPLE_RATE)


# --- success ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("ext", "subtype"), [("wav", "PCM_16"), ("wav", "FLOAT"), ("flac", "PCM_16"),
                                              ("ogg", "VORBIS")])
def test_soundfile_formats_decode(tmp_path, ext, subtype):
    x = tone(330.0, 1.0)
    path = tmp_path / f"tone.{ext}"
    sf.write(str(path), x, SAMPLE_RATE, subtype=subtype)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == len(x)
    assert abs(peak_frequency(y) - 330.0) < 2.0
    if ext != "ogg":  # lossless formats come back (nearly) sample for sample
        np.testing.assert_allclose(y, x, atol=1e-3)


@pytest.mark.parametrize(("ext", "codec"), [("mp3", ("-c:a", "libmp3lame", "-b:a", "64k")),
                                            ("m4a", ("-c:a", "aac", "-b:a", "64k"))])
def test_ffmpeg_formats_decode(tmp_path, ext, codec):
    src = tmp_path / "src.wav"
    sf.write(str(src), tone(440.0, 1.0, sr=44_100), 44_100, subtype="PCM_16")
    path = ffmpeg_encode(src, tmp_path / f"tone.{ext}", *codec)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - SAMPLE_RATE) < 0.1 * SAMPLE_RATE  # codec priming/padding adds a few ms at most
    assert abs(peak_frequency(y) - 440.0) < 3.0
    assert 0.2 < np.max(np.abs(y)) <= 1.0


def test_mislabelled_file_is_still_decoded(tmp_path):
    """An m4a renamed to .wav: soundfile fails, ffmpeg reads it."""
    src = tmp_path / "src.wav"
    save_wav(src, tone(500.0, 1.0))
    m4a = ffmpeg_encode(src, tmp_path / "real.m4a", "-c:a", "aac")
    fake = tmp_path / "fake.wav"
    fake.write_bytes(m4a.read_bytes())
    assert abs(peak_frequency(load_audio(fake)) - 500.0) < 3.0


def test_stereo_file_is_mixed_down(tmp_path):
    left, right = tone(300.0, amp=0.4), tone(700.0, amp=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    y = load_audio(path)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-6)


def test_resampled_from_44k(tmp_path):
    x = tone(440.0, 1.5, sr=44_100)
    path = tmp_path / "cd.wav"
    sf.write(str(path), x, 44_100, subtype="FLOAT")
    y = load_audio(path)
    assert len(y) == int(1.5 * SAMPLE_RATE)
    assert abs(peak_frequency(y) - 440.0) < 1.0
    np.testing.assert_allclose(np.sqrt(np.mean(y[1000:-1000] ** 2)), 0.5 / np.sqrt(2), rtol=0.01)  # level kept
    z = load_audio(x, sr=44_100)  # the array path resamples the same way
    np.testing.assert_allclose(z, y, atol=1e-6)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_multichannel_arrays(layout):
    left, right = tone(300.0, amp=0.4), tone(600.0, amp=0.2)
    data = np.stack([left, right]) if layout == "channels_first" else np.stack([left, right], axis=1)
    y = load_audio(data, sr=SAMPLE_RATE)
    assert y.shape == (SAMPLE_RATE,)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-6)


def test_integer_arrays_are_scaled():
    x = (tone(amp=0.5) * 32767).astype(np.int16)
    y = load_audio(x, sr=SAMPLE_RATE)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, tone(amp=0.5), atol=1e-4)


def test_over_full_scale_float_is_normalised():
    y = load_audio(tone(amp=4.0), sr=SAMPLE_RATE)
    assert np.isclose(np.max(np.abs(y)), 1.0, atol=1e-4)


def test_resample_identity_and_length():
    x = tone(seconds=1.0, sr=48_000)
    assert resample(x, 48_000, 48_000) is not None and len(resample(x, 48_000, 48_000)) == len(x)
    assert len(resample(x, 48_000)) == SAMPLE_RATE


def test_num_frames():
    assert num_frames(SAMPLE_RATE) == FPS
    assert num_frames(int(1.5 * SAMPLE_RATE)) == 45
    assert num_frames(1) == 1
    assert num_frames(SAMPLE_RATE * 70) == 70 * FPS


def test_save_wav_round_trip(tmp_path):
    x = tone(seconds=0.5)
    path = save_wav(tmp_path / "x.wav", x)
    assert sf.info(str(path)).subtype == "PCM_16"
    np.testing.assert_allclose(load_audio(path), x, atol=1e-4)
