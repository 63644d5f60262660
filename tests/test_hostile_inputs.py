"""Hostile uploads through the launched app (``gradio_client`` against one loopback server on a tiny ladder).

Every bad input is answered by one clear one-line message and the server keeps serving; odd but valid audio (8 kHz,
192 kHz, 8 channels, silence, a video's soundtrack, odd file names) animates for its own length. The 1-hour file is
a real one (silent 16-bit 8 kHz wav, 57.6 MB, under the 100 MB upload limit) refused over the app's 60 s cap.
``load_audio``'s own messages are unit-tested in ``test_audio.py``; checkpoint damage in ``test_checkpoint.py``
and ``test_cli_safety.py``; random bytes and arrays in ``test_fuzz.py``.
"""

from __future__ import annotations

import io
import re
import socket
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import speechlike

import app
from diffusiontalker.audio import FPS, SAMPLE_RATE, save_wav
from diffusiontalker.pipeline import Pipeline

MAX_SECONDS = 60.0  # the app's default cap
ROOT = Path(__file__).resolve().parents[1]
TRIED: list[str] = []  # inputs sent to the server (the count goes in the report)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_ladder, tmp_path_factory):
    """One launched app for the whole module: a tiny ladder, small videos, the default caps."""
    from gradio_client import Client

    pipe = Pipeline.from_pretrained(tiny_ladder)
    demo = app.build_demo(pipe, output_root=tmp_path_factory.mktemp("hostile_out"), max_seconds=MAX_SECONDS)
    demo.talker.main_size = 64  # small videos: these tests are about inputs, not pixels
    demo.queue(default_concurrency_limit=2, max_size=16)
    opts = app.launch_options("127.0.0.1", _free_port())
    demo.launch(prevent_thread_lock=True, quiet=True, **opts)
    url = f"http://127.0.0.1:{opts['server_port']}/"
    client = Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("hostile_dl")))
    yield demo, client, url
    demo.close()
    print(f"\nhostile inputs tried through the app: {len(TRIED)}")


def _predict(server, path: Path) -> tuple:
    from gradio_client import handle_file

    _, client, _ = server
    TRIED.append(path.name)
    return client.predict(handle_file(str(path)), "blendshape", 1, app.AUTO, "ava", "ben", 0.5, 1, 0, False,
                          api_name="/generate")


def _refused(server, path: Path, pattern: str) -> str:
    """Send a bad file; the app answers with one line matching ``pattern``."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        _predict(server, path)
    message = str(err.value)
    assert "\n" not in message.strip() and len(message) < 300, message
    assert re.search(pattern, message), message
    return message


def _animated(server, path: Path, seconds: float) -> np.ndarray:
    """Send a good file; the app returns an mp4 and an npy of ``seconds`` x fps frames; returns the npy."""
    video, *_, files = _predict(server, path)
    assert Path(video).suffix == ".mp4" and Path(video).stat().st_size > 0
    values = np.load(next(f for f in files if f.endswith(".npy")))
    assert values.shape[1] == 52 and abs(values.shape[0] - seconds * FPS) <= 1
    assert np.all(np.isfinite(values)) and values.min() >= 0 and values.max() <= 1
    return values


def _wav_file(path: Path, samples: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    sf.write(str(path), samples, sr, subtype=subtype)
    return path


def _ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True, timeout=60)


# --- refused, with one clear message ----------------------------------------------------------------------------
def test_empty_file(server, tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    _refused(server, tmp_path / "empty.wav", r"empty \(0 bytes\)")


def test_random_bytes_named_wav(server, tmp_path):
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(0).bytes(4096))
    _refused(server, tmp_path / "noise.wav", r"could not decode noise\.wav as audio")


def test_truncated_wav_header(server, tmp_path):
    whole = io.BytesIO()
    sf.write(whole, speechlike(1.0), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    (tmp_path / "cut.wav").write_bytes(whole.getvalue()[:30])  # cut inside the 44-byte header
    _refused(server, tmp_path / "cut.wav", r"could not decode cut\.wav as audio")


def test_header_promising_data_that_is_missing(server, tmp_path):
    whole = io.BytesIO()
    sf.write(whole, speechlike(1.0), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    (tmp_path / "nodata.wav").write_bytes(whole.getvalue()[:44 + 2 * 800])  # header says 1 s, 0.05 s present
    _refused(server, tmp_path / "nodata.wav", r"0\.05 s long; give at least 0\.2 s|could not decode")


def test_video_without_sound(server, tmp_path):
    clip = tmp_path / "clip.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=10", "-t", "1", "-pix_fmt", "yuv420p", str(clip))
    _refused(server, clip, r"clip\.mp4 has no audio track")


def test_zero_length_audio(server, tmp_path):
    _refused(server, _wav_file(tmp_path / "nothing.wav", np.zeros(0, np.float32), SAMPLE_RATE),
             r"holds no samples \(zero length\)")


def test_a_tenth_of_a_second(server, tmp_path):
    _refused(server, _wav_file(tmp_path / "blip.wav", speechlike(0.1), SAMPLE_RATE),
             r"audio is 0\.10 s long; give at least 0\.2 s of speech")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_samples(server, tmp_path, bad):
    x = speechlike(0.5)
    x[1000] = bad
    _refused(server, _wav_file(tmp_path / "broken.wav", x, SAMPLE_RATE, subtype="FLOAT"),
             r"contains NaN or infinite samples")


def test_one_hour_file_is_refused_with_the_cap_stated(server, tmp_path):
    path = tmp_path / "one_hour.wav"
    sr, seconds = 8000, 3600
    with wave.open(str(path), "wb") as w:  # silent 16-bit mono, written a minute at a time
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        minute = bytes(2 * sr * 60)
        for _ in range(seconds // 60):
            w.writeframes(minute)
    assert path.stat().st_size > 57_000_000
    _refused(server, path, rf"audio is 3600\.0 s long, over the {MAX_SECONDS:.0f} s limit")


# --- odd but valid: animated for its own length ----------------------------------------------------------------
def test_pure_silence_gives_a_finite_animation_not_an_error(server, tmp_path):
    _animated(server, _wav_file(tmp_path / "silence.wav", np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE), 1.0)


@pytest.mark.parametrize("sr", [8000, 192_000])
def test_unusual_sample_rates(server, tmp_path, sr):
    _animated(server, _wav_file(tmp_path / f"rate{sr}.wav", speechlike(0.6, sr=sr), sr), 0.6)


def test_eight_channels(server, tmp_path):
    x = np.stack([speechlike(0.5, seed=c) * (c + 1) / 8 for c in range(8)], axis=1)  # (N, 8)
    _animated(server, _wav_file(tmp_path / "surround.wav", x, SAMPLE_RATE), 0.5)


def test_video_soundtrack_is_used(server, tmp_path):
    speech = save_wav(tmp_path / "speech.wav", speechlike(0.8))
    clip = tmp_path / "talk.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=10", "-i", str(speech), "-t", "0.8", "-pix_fmt",
            "yuv420p", "-c:a", "aac", "-shortest", str(clip))
    _animated(server, clip, 0.8)


@pytest.mark.parametrize("name", ["my take 2 ..réunion_日本語_🎤 a;b&c|d$(touch PWNED)`id`'\".wav", "-rf --help.wav"])
def test_odd_file_names(server, tmp_path, name):
    path = save_wav(tmp_path / name, speechlike(0.4, seed=len(name)))
    video, *_, files = _predict(server, path)
    for f in [video, *files]:  # outputs are named from a sanitised stem: letters, digits, _ and -
        assert all(c.isalnum() or c in "_-." for c in Path(f).name), f
    # and the same names reach ffmpeg (the non-native decoder) without a shell
    (tmp_path / (name + ".m4a")).write_bytes(b"\0junk" * 100)
    _refused(server, tmp_path / (name + ".m4a"), r"could not decode")
    for where in (ROOT, tmp_path, Path.cwd()):
        assert not (where / "PWNED").exists()


def test_upload_name_with_path_traversal_stays_in_the_cache(server, tmp_path):
    import httpx
    from gradio_client import handle_file

    demo, client, url = server
    payload = io.BytesIO()
    sf.write(payload, speechlike(0.4), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    evil = "../../../../tmp/diffusiontalker_traversal_probe.wav"
    r = httpx.post(f"{url}gradio_api/upload", files={"files": (evil, payload.getvalue(), "audio/wav")}, timeout=30)
    r.raise_for_status()
    [stored] = r.json()
    TRIED.append(evil)
    cache = Path(demo.GRADIO_CACHE).resolve()
    assert Path(stored).resolve().is_relative_to(cache) and ".." not in Path(stored).parts
    assert not Path("/tmp/diffusiontalker_traversal_probe.wav").exists()
    # the stored upload is ordinary audio to the app
    video, *_ = client.predict(handle_file(stored), "blendshape", 1, app.AUTO, "ava", "ben", 0.5, 1, 0, False,
                               api_name="/generate")
    assert Path(video).suffix == ".mp4"


# --- and after all that, the server still serves ----------------------------------------------------------------
def test_server_still_serves_a_good_request(server, tmp_path):
    _animated(server, save_wav(tmp_path / "hello.wav", speechlike(1.0, seed=9)), 1.0)
    assert len(TRIED) >= 20


# --- silence on the trained model: a calm, closed mouth ---------------------------------------------------------
@pytest.mark.skipif(not (ROOT / "checkpoints" / "default").is_dir(), reason="needs the trained default model")
def test_silence_gives_a_closed_mouth_on_the_trained_model():
    pipe = Pipeline.from_pretrained(ROOT / "checkpoints" / "default")
    [anim] = pipe(np.zeros(2 * SAMPLE_RATE, np.float32), sr=SAMPLE_RATE, seed=0)
    jaw = anim.channel("jawOpen")
    assert jaw.mean() < 0.1 and np.percentile(jaw, 95) < 0.2, (jaw.mean(), jaw.max())
    assert jaw.shape == (2 * FPS,)
