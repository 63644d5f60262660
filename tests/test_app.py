"""The Gradio app: builds without launching, its callback returns real files, and a launched server answers
``gradio_client`` with a browser-playable mp4 (H.264 + AAC) and an npy of duration × fps frames; user errors come
back as messages and the server keeps serving."""

from __future__ import annotations

import html
import json
import os
import re
import socket
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from conftest import speechlike

import app
from diffusiontalker.audio import FPS, save_wav
from diffusiontalker.pipeline import Pipeline

SECONDS = 1.0


@pytest.fixture(scope="module")
def pipe(tiny_ladder) -> Pipeline:
    return Pipeline.from_pretrained(tiny_ladder)


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    return save_wav(tmp_path_factory.mktemp("app_audio") / "hello.wav", speechlike(SECONDS, seed=3))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_build_demo_builds_without_launching(pipe, tmp_path):
    demo = app.build_demo(pipe, output_root=tmp_path)
    assert isinstance(demo, gr.Blocks)
    assert not demo.is_running
    assert any(getattr(fn, "api_name", None) == "generate" for fn in demo.fns.values())
    assert demo.talker.output_root.is_relative_to(tmp_path)
    # the ladder's steps and identities are what the page offers
    assert [v for _, v in app.steps_choices(pipe)] == [1, 2, 4, 8]
    assert app.steps_choices(pipe)[-1][0] == "8 steps (teacher)"
    assert app.identity_choices(pipe) == [app.AUTO, "ava", "ben", "cy", app.MIX]


def test_emotion_menu_follows_the_model(pipe, tmp_path, wav):
    """No emotion head: the menu offers only 'auto' (and is hidden). With one: its emotions, and a named emotion
    reaches the generated animation (its label shows in the timings)."""
    from conftest import make_ladder

    assert app.emotion_choices(pipe) == [app.AUTO] and app.emotion_spec(app.AUTO) == "auto"
    emo = Pipeline.from_pretrained(make_ladder(tmp_path / "emo", steps=(2, 1), emotions=["neutral", "happy"]))
    assert app.emotion_choices(emo) == [app.AUTO, "neutral", "happy"]
    demo = app.build_demo(emo, output_root=tmp_path / "out")
    *_, timings, files = list(demo.talker.generate(str(wav), "blendshape", 1, app.AUTO, None, None, 0.5, 1, 0,
                                                   False, emotion="happy"))[-1]
    assert "emotion `happy`" in timings
    sidecar = next(p for p in files if str(p).endswith(".json"))
    assert json.loads(Path(sidecar).read_text())["emotion"] == "happy"
    with pytest.raises(gr.Error, match="unknown emotion"):
        list(demo.talker.generate(str(wav), "blendshape", 1, app.AUTO, None, None, 0.5, 1, 0, False, emotion="sad"))
    # through the served page: the Emotion menu is the input after "compare" (gradio slots progress in itself)
    from gradio_client import Client, handle_file

    demo.queue(default_concurrency_limit=1, max_size=4)
    opts = app.launch_options("127.0.0.1", _free_port())
    demo.launch(prevent_thread_lock=True, quiet=True, **opts)
    try:
        client = Client(f"http://127.0.0.1:{opts['server_port']}/", verbose=False, download_files=str(tmp_path))
        out = client.predict(handle_file(str(wav)), "blendshape", 1, app.AUTO, "ava", "ben", 0.5, 1, 0, False,
                             "happy", api_name="/generate")
        assert "emotion `happy`" in out[7]
    finally:
        demo.close()


def test_identity_choice_maps_to_pipeline_spec(pipe):
    assert app.identity_spec(app.AUTO, None, None, 0.5, pipe) == "auto"
    assert app.identity_spec("ben", None, None, 0.5, pipe) == "ben"
    assert app.identity_spec(app.MIX, "ava", "cy", 0.25, pipe) == {"ava": 0.75, "cy": 0.25}
    assert app.identity_spec(app.MIX, "ava", "ava", 0.25, pipe) == "ava"


class Recorder:
    """Stands in for gr.Progress: records (fraction, description) calls."""

    def __init__(self):
        self.calls: list[tuple[float, str]] = []

    def __call__(self, fraction, desc=None, **_):
        self.calls.append((float(fraction), desc or ""))


def tile_labels(preview: str) -> list[str]:
    """The tile labels of a live-preview snippet (its JSON payload sits in the data-dt-anim attribute)."""
    payload = re.search(r'data-dt-anim="([^"]*)"', preview).group(1)
    return [a["label"] for a in json.loads(html.unescape(payload))["anims"]]


def run(gen) -> list[tuple]:
    """All values a generator callback yields (the app's event is a generator: preview first, videos last)."""
    return list(gen)


def test_generate_yields_the_preview_before_rendering_any_video(pipe, tmp_path):
    demo = app.build_demo(pipe, output_root=tmp_path)
    short = save_wav(tmp_path / "short.wav", speechlike(0.5, seed=1))
    rec = Recorder()
    gen = demo.talker.generate(str(short), "blendshape", 2, app.MIX, "ava", "ben", 0.3, 2, 5, True, rec)
    first = next(gen)
    assert not list(tmp_path.rglob("*.mp4"))  # nothing rendered yet: the preview never waits for a video
    steps = [first, *gen]
    last = steps[-1]
    # 1st yield: the live preview (both samples as tiles), scores and timings; no video yet, old outputs cleared
    video, preview, cmp_video, cmp_md, div_video, scores, plot, timings, files = first
    assert video is None and files is None and plot is None
    assert 'data-dt-player="1"' in preview and "<script" not in preview
    assert tile_labels(preview) == ["2 steps · seed 5", "2 steps · seed 6"]
    assert not cmp_video["visible"] and not div_video["visible"]
    assert "Running the 8-step teacher" in cmp_md["value"]
    assert set(scores) == {"ava", "ben", "cy"}
    assert "running…" in timings
    # then the plot and files, then the teacher's tile, then the videos
    previews = [tile_labels(s[1]) for s in steps[1:-1] if isinstance(s[1], str)]
    assert len(previews) == 1 and previews[0][0].startswith("teacher · 8 steps")
    assert previews[0][1].startswith("student · 2 steps") and previews[0][2] == "2 steps · seed 6"
    # rendering moved the progress bar frame by frame, forwards
    frames = [(f, d) for f, d in rec.calls if "frame" in d]
    assert len(frames) >= 3 and any("teacher vs student" in d for _, d in frames)
    assert [f for f, _ in frames] == sorted(f for f, _ in frames) and frames[-1][0] <= 0.97
    assert rec.calls[-1] == (1.0, "done")
    # the last yield carries every output (what gradio_client receives)
    video, preview, cmp_video, cmp_md, div_video, scores, plot, timings, files = last
    assert Path(video).suffix == ".mp4" and Path(video).stat().st_size > 0
    assert tile_labels(preview) == previews[0]
    assert cmp_video["visible"] and Path(cmp_video["value"]).exists()
    assert "Speed-up" in cmp_md["value"] and "8 → 2 steps" in cmp_md["value"]
    assert div_video["visible"] and Path(div_video["value"]).exists()
    assert set(scores) == {"ava", "ben", "cy"} and abs(sum(scores.values()) - 1) < 1e-4
    assert plot.axes and {line.get_label() for line in plot.axes[0].lines} >= {"jawOpen", "eyeBlinkLeft"}
    assert "real-time factor" in timings and "mix" in timings and "running…" not in timings
    suffixes = sorted(Path(f).suffix for f in files)
    assert suffixes == [".csv", ".glb", ".json", ".mp4", ".npy"]
    assert all(Path(f).is_relative_to(tmp_path) for f in files)
    timeline = demo.talker.last_timeline
    assert timeline["start"] <= timeline["sampled"] <= timeline["preview"] <= timeline["videos"]
    # every request writes into its own folder
    *_, files2 = run(demo.talker.generate(str(short), "blendshape", 1, app.AUTO, None, None, 0.5, 1, 0, False))[-1]
    assert Path(files2[0]).parent != Path(files[0]).parent


def test_generate_turns_user_errors_into_gr_error(pipe, tmp_path):
    demo = app.build_demo(pipe, output_root=tmp_path)
    tiny = save_wav(tmp_path / "blip.wav", speechlike(0.05))
    with pytest.raises(gr.Error, match="at least 0.2 s"):
        run(demo.talker.generate(str(tiny), "blendshape", 8, app.AUTO, None, None, 0.5, 1, 0, False))
    with pytest.raises(gr.Error, match="Upload or record"):
        run(demo.talker.generate(None, "blendshape", 8, app.AUTO, None, None, 0.5, 1, 0, False))


def test_page_lists_the_example_clips(pipe, tmp_path):
    demo = app.build_demo(pipe, output_root=tmp_path)
    examples = app.example_files()
    if not examples:
        pytest.skip("no example clips in assets/examples (python -m train.make_examples)")
    datasets = [b for b in demo.blocks.values() if isinstance(b, gr.Dataset)]
    assert len(datasets) == 1
    assert [Path(s[0]["path"] if isinstance(s[0], dict) else s[0]).name for s in datasets[0].samples] == \
        [Path(p).name for p in examples]
    assert datasets[0].sample_labels == [Path(p).stem for p in examples]


def test_importing_app_loads_and_launches_nothing():
    assert not [k for k, v in vars(app).items() if isinstance(v, (Pipeline, gr.Blocks, app.Talker))]
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"


def test_binds_all_interfaces_only_on_spaces(monkeypatch):
    for var in ("SPACE_ID", "SYSTEM", "GRADIO_SERVER_NAME"):
        monkeypatch.delenv(var, raising=False)
    assert app._default_host() == "127.0.0.1"
    monkeypatch.setenv("SPACE_ID", "someone/diffusiontalker")
    assert app._default_host() == "0.0.0.0"


def test_main_without_checkpoint_exits_2_with_a_hint(tmp_path, capsys):
    assert app.main(["--checkpoint", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "make default-model" in err and "--checkpoint" in err and len(err.strip().splitlines()) == 1


def test_launched_app_answers_gradio_client(pipe, wav, tmp_path):
    from gradio_client import Client, handle_file

    from diffusiontalker.render.video import probe

    demo = app.build_demo(pipe, output_root=tmp_path)
    demo.queue(default_concurrency_limit=2, max_size=16)
    opts = app.launch_options("127.0.0.1", _free_port())
    demo.launch(prevent_thread_lock=True, quiet=True, **opts)
    try:
        client = Client(f"http://127.0.0.1:{opts['server_port']}/", verbose=False, download_files=str(tmp_path))

        def generate(path: Path):
            return client.predict(handle_file(str(path)), "blendshape", 8, app.AUTO, "ava", "ben", 0.5, 1, 0, False,
                                  api_name="/generate")

        video, *_, files = generate(wav)  # gradio_client returns downloaded file paths
        info = probe(video)
        assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
        assert sorted(Path(f).suffix for f in files) == [".csv", ".glb", ".json", ".mp4", ".npy"]
        frames = np.load(next(f for f in files if f.endswith(".npy"))).shape[0]
        assert abs(frames - SECONDS * FPS) <= 1

        bad = tmp_path / "not_audio.wav"
        bad.write_text("this is not a sound file")
        with pytest.raises(Exception, match="could not decode|is it a sound file"):
            generate(bad)

        video2, *_ = generate(wav)  # the server survived the bad request
        assert probe(video2)["video_codec"] == "h264"
    finally:
        demo.close()
