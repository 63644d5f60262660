"""DiffusionTalker Gradio app (also the Hugging Face Space): speech in, animated head out.

Layout plus thin callbacks that call :class:`~diffusiontalker.Pipeline`, the renderer and the exporters; no model
logic lives here. Importing this module loads nothing and launches nothing: ``main()`` loads the pipeline once and
serves ``build_demo(pipeline)``.

    python app.py --checkpoint checkpoints/default            # http://127.0.0.1:7860
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no network at start
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from diffusiontalker.animation import Animation  # noqa: E402
from diffusiontalker.cleanup import prune, remove_if_empty  # noqa: E402
from diffusiontalker.errors import DiffusionTalkerError  # noqa: E402
from diffusiontalker.pipeline import Pipeline  # noqa: E402

logger = logging.getLogger("diffusiontalker.app")
ROOT = Path(__file__).resolve().parent
EXAMPLES_DIR = ROOT / "assets" / "examples"
DEFAULT_CHECKPOINT = "checkpoints/default"
DEFAULT_VERTEX_CHECKPOINT = "checkpoints/default-vertex"

AUTO = "Auto — match from audio"
MIX = "Mix of two"
MAIN_SIZE = 384  # px, the main video (rendering dominates the wait on 2 CPUs)
TILE_SIZE = 256  # px per tile of the comparison and diversity grids
MAX_SECONDS = float(os.environ.get("DIFFUSIONTALKER_APP_MAX_SECONDS", 60.0))
PLOT_CHANNELS = ("jawOpen", "mouthClose", "mouthFunnel", "eyeBlinkLeft", "eyeBlinkRight")
KIND_LABELS = {"blendshape": "Blendshape head (ARKit-52)", "vertex": "Vertex mesh"}
STALE_SECONDS = 2 * 3600  # request folders older than this are removed when a new request starts
MAX_OUTPUT_BYTES = int(float(os.environ.get("DIFFUSIONTALKER_APP_MAX_OUTPUT_MB", 1024)) * 2**20)  # all requests
MAX_UPLOAD = os.environ.get("DIFFUSIONTALKER_APP_MAX_UPLOAD", "100mb")  # gradio refuses larger uploads

CSS = """
#title {text-align: center}
#preview:empty {display: none}
#preview .dt-player {margin-top: 30px}  /* below gradio's floating label, which would cover the tile labels */
"""


# --- helpers (no gradio state) -------------------------------------------------------------------------------------
def steps_choices(pipe: Pipeline) -> list[tuple[str, int]]:
    """Dropdown choices for a pipeline's ladder, labelled student/teacher."""
    multi = len(pipe.available_steps) > 1
    out = []
    for s in pipe.available_steps:
        role = "teacher" if multi and s == pipe.teacher_steps else "student" if multi else "model"
        out.append((f"{s} steps ({role})", s))
    return out


def identity_choices(pipe: Pipeline) -> list[str]:
    names = pipe.identity_names
    return [AUTO, *names, MIX] if len(names) >= 2 else [AUTO, *names]


def identity_spec(choice: str | None, mix_a: str | None, mix_b: str | None, mix_weight: float,
                  pipe: Pipeline) -> str | dict[str, float]:
    """UI choice -> the pipeline's identity argument ('auto', a name, or a {name: weight} mix of two)."""
    if not choice or choice == AUTO:
        return "auto"
    if choice != MIX:
        return choice
    names = pipe.identity_names
    a = mix_a or names[0]
    b = mix_b or names[min(1, len(names) - 1)]
    w = float(np.clip(mix_weight, 0.0, 1.0))
    if a == b:
        return a
    return {a: 1.0 - w, b: w}


def emotion_choices(pipe: Pipeline) -> list[str]:
    """'auto' and the model's emotions; just 'auto' for a model without an emotion head."""
    return [AUTO, *pipe.emotion_names]


def emotion_spec(choice: str | None) -> str:
    """UI choice -> the pipeline's emotion argument ('auto' or a name)."""
    return "auto" if not choice or choice == AUTO else choice


def _safe_stem(path: str | os.PathLike) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(path).stem).strip("_")
    return stem[:40] or "speech"


def channel_plot(anim: Animation):
    """Key channels over time: a matplotlib Figure (no pyplot state, Agg canvas)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    t = np.arange(anim.num_frames) / anim.fps  # (T,)
    if anim.kind == "blendshape" and anim.names is not None:
        for name in PLOT_CHANNELS:
            if name in anim.names:
                ax.plot(t, anim.channel(name), label=name, linewidth=1.4)
        ax.set_ylabel("weight")
        ax.set_ylim(-0.02, 1.02)
    else:
        base = anim.template if anim.template is not None else anim.values[0]
        motion = np.linalg.norm(anim.values - base[None], axis=-1)  # (T, V)
        ax.plot(t, motion.mean(axis=1), label="mean vertex offset", linewidth=1.4)
        ax.plot(t, motion.max(axis=1), label="max vertex offset", linewidth=1.0, alpha=0.7)
        ax.set_ylabel("offset (mesh units)")
    ax.set_xlabel("time (s)")
    ax.grid(alpha=0.3)
    fig.suptitle(" ", fontsize=8)  # head room for gradio's label, which sits over the top-left corner
    fig.legend(loc="outside lower center", ncol=5, fontsize=8, frameon=False)  # below: gradio's label sits on top
    return fig


def timings_markdown(anim: Animation, render_s: float | None, wall_s: float, extra: list[str] | None = None,
                     preview_s: float | None = None) -> str:
    """Per-stage seconds and the real-time factor (wall time / audio duration; below 1 is faster than real time).

    ``render_s=None``: the videos are still rendering (``wall_s`` is then the time to the preview);
    ``preview_s``: seconds from the request to the live preview.
    """
    t = anim.timings
    rtf = wall_s / max(anim.duration, 1e-6)

    def sec(x: float) -> str:
        return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"

    if preview_s is None and render_s is None:
        preview_s = wall_s
    lines = [
        f"**{anim.duration:.1f} s of audio → {anim.num_frames} frames at {anim.fps:g} fps** · "
        f"model `{anim.model}` · identity `{anim.identity}`"
        + (f" · emotion `{anim.emotion}`" if anim.emotion else ""),
        "",
        "| decode | encode | identity | sample | preview | videos | total | RTF |",
        "|---|---|---|---|---|---|---|---|",
        f"| {sec(t.get('load', 0))} | {sec(t.get('encode', 0))} | {sec(t.get('match', 0))} | "
        f"{sec(t.get('sample', 0))} | {sec(preview_s) if preview_s is not None else '–'} | "
        f"{sec(render_s) if render_s is not None else 'running…'} | {sec(wall_s)} | {rtf:.2f} |",
    ]
    what = "the live preview" if render_s is None else "the videos"
    lines += ["", f"*preview*: request → live preview (it plays as soon as sampling ends); *videos*: mp4 rendering, "
                  f"the download path. RTF (real-time factor) = time to {what} ÷ audio length "
                  f"({'faster' if rtf < 1 else 'slower'} than real time)."]
    if render_s is not None and preview_s is not None:
        lines[-1] += f" The live preview's real-time factor was {preview_s / max(anim.duration, 1e-6):.2f}."
    if extra:
        lines += ["", *extra]
    return "\n".join(lines)


def _remove_stale(folder: Path, max_age: float = STALE_SECONDS) -> None:
    """Delete sub-folders of ``folder`` not modified for ``max_age`` seconds (old request outputs)."""
    now = time.time()
    for old in folder.iterdir():
        try:
            if old.is_dir() and now - old.stat().st_mtime > max_age:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass


class Talker:
    """The state shared by every request: the pipelines (loaded once) and a root folder for per-request outputs."""

    def __init__(self, pipeline: Pipeline, vertex_pipeline: Pipeline | None = None,
                 output_root: str | os.PathLike | None = None, max_seconds: float = MAX_SECONDS,
                 main_size: int = MAIN_SIZE, tile_size: int = TILE_SIZE):
        self.pipelines: dict[str, Pipeline] = {pipeline.kind: pipeline}
        if vertex_pipeline is not None:
            if vertex_pipeline.kind != "vertex" or pipeline.kind == "vertex":
                raise DiffusionTalkerError("vertex_pipeline must be a vertex checkpoint next to a blendshape one")
            self.pipelines["vertex"] = vertex_pipeline
        self.default_kind = pipeline.kind
        root = Path(output_root) if output_root else Path(tempfile.gettempdir()) / "diffusiontalker-app"
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale(root)  # folders left by earlier runs of the app
        self.output_root = Path(tempfile.mkdtemp(prefix="run-", dir=root))  # per app instance
        self.max_seconds = max_seconds
        self.main_size = main_size
        self.tile_size = tile_size
        self.max_output_bytes = MAX_OUTPUT_BYTES  # request folders beyond this total are pruned, oldest first
        self._active: set[Path] = set()  # folders of requests in flight: never pruned
        self._reserve = 0  # bytes of the largest request folder seen: room kept for the next request
        self._dirs_lock = threading.Lock()
        self._render_lock = threading.Lock()  # one GL context renders at a time; sampling of others overlaps
        self.last_timeline: dict[str, float] = {}  # epoch seconds of the latest request's stages

    def pipeline(self, kind: str | None) -> Pipeline:
        return self.pipelines.get(kind or self.default_kind, self.pipelines[self.default_kind])

    def _request_dir(self) -> Path:
        """A fresh folder per request, so concurrent requests never mix files; first prune finished requests'
        folders by age and total size (``diffusiontalker.cleanup.prune``) so disk use stays bounded."""
        with self._dirs_lock:
            report = prune(self.output_root, self.max_output_bytes, STALE_SECONDS, keep=self._active,
                           reserve=self._reserve)
            self._reserve = max(self._reserve, report.largest)
            out = Path(tempfile.mkdtemp(prefix="req-", dir=self.output_root))
            self._active.add(out)
        return out

    def _release(self, out: Path) -> None:
        """The request owning ``out`` ended: its folder may be pruned from now on (and goes now if empty)."""
        with self._dirs_lock:
            self._active.discard(out)
        remove_if_empty(out)  # a refused input left nothing

    def _render(self, fn, *args, **kwargs) -> tuple[Path, float]:
        with self._render_lock:
            tic = time.perf_counter()
            path = fn(*args, **kwargs)
            return Path(path), time.perf_counter() - tic

    # --- the one event --------------------------------------------------------------------------------------
    def generate(self, audio: str | None, kind: str | None, steps: int | str | None, identity: str | None,
                 mix_a: str | None, mix_b: str | None, mix_weight: float, num_samples: int | float, seed: int | float,
                 compare: bool, progress: gr.Progress = gr.Progress(),  # noqa: B008
                 emotion: str | None = AUTO) -> Iterator[tuple]:
        """Run one request, yielding the values of the output components (see ``build_demo``) as they are ready.

        Preview first: as soon as sampling ends the live WebGL preview, identity scores and timings appear; then
        the channel plot and the npy/csv/glb downloads; with "compare", the teacher's tile and the speed-up; the
        mp4 videos come last (the "download video" path). An API client (``gradio_client``) gets the last yield,
        which carries every output. ``progress`` must default to a ``gr.Progress()`` instance: that default is
        how gradio knows to track it (gradio slots it in by position, so the ``emotion`` input after it still
        receives the page's Emotion menu).
        """
        if not audio:
            raise gr.Error("Upload or record some speech first (wav, flac, ogg, mp3 or m4a).")
        out = self._request_dir()
        try:
            yield from self._generate(audio, kind, steps, identity, mix_a, mix_b, mix_weight, int(num_samples),
                                      int(seed or 0), bool(compare), progress, out, emotion)
        except DiffusionTalkerError as e:
            raise gr.Error(str(e)) from e
        finally:
            self._release(out)

    def _generate(self, audio: str, kind: str | None, steps: int | str | None, identity: str | None,
                  mix_a: str | None, mix_b: str | None, mix_weight: float, num_samples: int, seed: int,
                  compare: bool, progress: gr.Progress, out: Path, emotion: str | None = AUTO) -> Iterator[tuple]:
        from diffusiontalker.render.video import render_animation, render_grid

        wall = time.perf_counter()
        timeline = {"start": time.time()}  # epoch seconds of each stage (tests compare them with the browser)
        self.last_timeline = timeline
        pipe = self.pipeline(kind)
        steps = int(steps) if steps not in (None, "") else pipe.default_steps
        num_samples = int(np.clip(num_samples, 1, 4))
        spec = identity_spec(identity, mix_a, mix_b, mix_weight, pipe)
        # a model without an emotion head (its dropdown is hidden) reads nothing; an unknown name is an error
        emo = emotion_spec(emotion) if pipe.emotion_names else "auto"
        do_compare = compare and len(pipe.available_steps) > 1 and steps != pipe.teacher_steps
        stem = f"{_safe_stem(audio)}_{steps}steps_seed{seed}"
        progress(0.0, desc="loading model")
        pipe.model(steps)  # load (once) before timing anything, so timings measure generation only
        if do_compare:
            pipe.model(pipe.teacher_steps)

        # progress: sampling takes [0, r0), then the videos share [r0, 0.97) equally, frame by frame
        r0 = 0.3 if do_compare else 0.2
        n_videos = 1 + int(do_compare) + int(num_samples > 1)

        def sampling(lo: float, hi: float, what: str):
            return lambda f, d: progress(lo + (hi - lo) * f, desc=f"{what}: {d}")

        def rendering(k: int, desc: str):
            """Per-frame callback for video ``k`` of ``n_videos`` (throttled: gradio sends each update)."""
            last = [0.0]

            def report(i: int, total: int) -> None:
                now = time.perf_counter()
                if i == total or now - last[0] >= 0.25:
                    last[0] = now
                    frac = (k + i / max(total, 1)) / n_videos
                    progress(r0 + (0.97 - r0) * frac, desc=f"{desc}: frame {i}/{total}")

            report(0, 1)
            return report

        tic = time.perf_counter()
        anims = pipe(audio, steps=steps, identity=spec, num_samples=num_samples, seed=seed,
                     progress=sampling(0.0, 0.2, f"{steps}-step model"), max_seconds=self.max_seconds, emotion=emo)
        main = anims[0]
        student, student_s = main, time.perf_counter() - tic
        timeline["sampled"] = time.time()
        scores = {k: float(v) for k, v in main.identity_scores.items()}
        extra: list[str] = []

        # 1. the live preview, as soon as sampling ends (old videos, plot and files are cleared meanwhile)
        tiles = anims
        labels = [f"{steps} steps · seed {a.seed}" for a in anims]
        compare_md = ""
        if do_compare:
            compare_md = f"#### Teacher vs student\nRunning the {pipe.teacher_steps}-step teacher for comparison…"
        elif compare:
            compare_md = ("Nothing to compare: this checkpoint has a single model."
                          if len(pipe.available_steps) == 1 else
                          f"You chose the teacher ({steps} steps); choose a student's steps to compare with it.")
        pending = ["Rendering the mp4 videos now; the live preview above plays already."]
        hidden = gr.update(value=None, visible=False)
        yield (None, preview_html(tiles, labels), hidden, gr.update(value=compare_md, visible=bool(compare_md)),
               hidden, scores, None, timings_markdown(main, None, time.perf_counter() - wall, pending), None)
        timeline["preview"] = time.time()
        preview_s = time.perf_counter() - wall

        # 2. plot and the animation files
        progress(r0 * 0.5 if do_compare else r0, desc="exporting files")
        files = self._export(main, out / stem, extra)
        plot = channel_plot(main)
        yield (gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), plot, gr.skip(), files)

        # 3. the teacher, when comparing: its tile joins the preview
        teacher = None
        if do_compare:
            if num_samples > 1:  # time the student on one sample, as the teacher is
                tic = time.perf_counter()
                [student] = pipe(audio, steps=steps, identity=spec, num_samples=1, seed=seed,
                                 max_seconds=self.max_seconds, emotion=emo)
                student_s = time.perf_counter() - tic
            tic = time.perf_counter()
            [teacher] = pipe(audio, steps=pipe.teacher_steps, identity=spec, num_samples=1, seed=seed,
                             progress=sampling(0.2, r0, f"teacher ({pipe.teacher_steps} steps)"),
                             max_seconds=self.max_seconds, emotion=emo)
            teacher_s = time.perf_counter() - tic
            speedup = teacher_s / max(student_s, 1e-9)
            sample_speedup = teacher.timings.get("sample", 0.0) / max(student.timings.get("sample", 0.0), 1e-9)
            compare_md = ("#### Teacher vs student\n"
                          f"**Speed-up: {speedup:.1f}×** end to end ({teacher_s:.2f} s → {student_s:.2f} s); "
                          f"{sample_speedup:.1f}× in the denoising loop "
                          f"({pipe.teacher_steps} → {steps} steps, same seed, identity and emotion).")
            pair = [f"teacher · {pipe.teacher_steps} steps · {teacher_s:.2f} s",
                    f"student · {steps} steps · {student_s:.2f} s"]
            tiles = [teacher, student, *anims[1:]]
            labels = pair + labels[1:]
            yield (gr.skip(), preview_html(tiles, labels), gr.skip(), gr.update(value=compare_md, visible=True),
                   gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())

        # 4. the videos: the download path, rendered while the user already watches the preview
        desc = f"rendering the video ({self.main_size} px)"
        video, render_s = self._render(render_animation, main, out / f"{stem}.mp4", size=self.main_size,
                                       progress=rendering(0, desc))
        compare_video = diversity_video = None
        if teacher is not None:
            compare_video, cmp_s = self._render(
                render_grid, [teacher, student], out / f"{stem}_teacher_vs_student.mp4", labels=pair,
                size=self.tile_size, cols=2, audio=main.audio, progress=rendering(1, "rendering teacher vs student"))
            render_s += cmp_s
        if num_samples > 1:
            diversity_video, div_s = self._render(
                render_grid, anims, out / f"{stem}_diversity.mp4", labels=[f"seed {a.seed}" for a in anims],
                size=self.tile_size, cols=2 if num_samples == 4 else None, audio=main.audio,
                progress=rendering(n_videos - 1, f"rendering {num_samples} diversity samples"))
            render_s += div_s
            extra.append(f"Diversity grid: {num_samples} samples (seeds {seed}–{seed + num_samples - 1}), "
                         f"rendered in {div_s:.2f} s.")
        timeline["videos"] = time.time()
        wall_s = time.perf_counter() - wall
        timings = timings_markdown(main, render_s, wall_s, extra, preview_s=preview_s)
        progress(1.0, desc="done")
        # the last yield carries every output (what an API client receives), the preview unchanged
        yield (
            str(video),
            preview_html(tiles, labels),
            gr.update(value=str(compare_video) if compare_video else None, visible=compare_video is not None),
            gr.update(value=compare_md, visible=bool(compare_md)),
            gr.update(value=str(diversity_video) if diversity_video else None, visible=diversity_video is not None),
            scores,
            plot,
            timings,
            [str(video), *files],
        )

    @staticmethod
    def _export(anim: Animation, stem: Path, notes: list[str]) -> list[str]:
        """npy (+ json, and a vertex model's template/faces), Live Link CSV and GLB beside ``stem``; paths."""
        from diffusiontalker.export import export_animation

        files: list[str] = []
        formats = [".npy", ".csv", ".glb"] if anim.kind == "blendshape" else [".npy", ".glb"]
        for suffix in formats:
            try:
                path = Path(export_animation(anim, stem.with_name(stem.name + suffix)))
            except DiffusionTalkerError as e:
                notes.append(f"{suffix[1:]} export unavailable: {e}")
                continue
            files.append(str(path))
            if suffix == ".npy":  # names/metadata json, and the template/faces of vertex animations
                files += [str(path.with_suffix(s)) for s in (".json", ".template.npy", ".faces.npy")
                          if path.with_suffix(s).exists()]
        return files


def preview_html(anims: list[Animation], labels: list[str] | None = None) -> str:
    """The WebGL live preview (``diffusiontalker.render.preview``): HTML for the ``#preview`` element, one tile
    per animation on one audio clock (the first animation's audio).

    Returns "" when no player is installed or when it fails: the preview is a bonus, the mp4 is the result.
    """
    try:
        from diffusiontalker.render import preview
    except ImportError:
        return ""
    if labels is None:
        labels = [f"seed {a.seed}" for a in anims] if len(anims) > 1 else [f"{anims[0].model} · seed {anims[0].seed}"]
    try:
        return str(preview.preview_html(anims, labels=labels, embed_player=False, embed_head=False))
    except Exception as e:  # noqa: BLE001 - never lose a finished generation to the preview
        logger.warning("live preview unavailable: %s: %s", type(e).__name__, e)
        return ""


def preview_component() -> gr.HTML:
    """The ``#preview`` element; the WebGL player and head mesh load once through its ``head=`` when present."""
    head = js = None
    try:
        from diffusiontalker.render import preview

        head, js = preview.player_head(), preview.JS_ON_LOAD
    except Exception as e:  # noqa: BLE001 - no player: an empty placeholder
        logger.info("no live preview player: %s", e)
    return gr.HTML("", label="Live 3D preview (drag to orbit, wheel to zoom)", show_label=True, container=True,
                   elem_id="preview", head=head, js_on_load=js)


# --- layout --------------------------------------------------------------------------------------------------------
def example_files(directory: Path = EXAMPLES_DIR) -> list[str]:
    return sorted(str(p) for p in directory.glob("*.wav")) if directory.is_dir() else []


def build_demo(pipeline: Pipeline, vertex_pipeline: Pipeline | None = None,
               output_root: str | os.PathLike | None = None, max_seconds: float = MAX_SECONDS) -> gr.Blocks:
    """The page for an already loaded pipeline (and optionally a vertex-mesh one). Nothing is launched here.

    The generate event is exposed as ``api_name="generate"``; the :class:`Talker` behind it is ``demo.talker``.
    """
    talker = Talker(pipeline, vertex_pipeline, output_root=output_root, max_seconds=max_seconds)
    pipe = pipeline
    names = pipe.identity_names
    multi = len(pipe.available_steps) > 1

    with gr.Blocks(title="DiffusionTalker", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(
            "# DiffusionTalker\n"
            "Speech-driven 3D face animation with a personalised, distilled diffusion model "
            "(after *DiffusionTalker*, arXiv 2311.16565). Upload or record speech, pick the number of denoising "
            "steps, a speaker identity and an emotion, and get an animated head with downloadable ARKit curves.",
            elem_id="title")
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Speech",
                                 elem_id="audio-input")
                model = gr.Radio([(KIND_LABELS[k], k) for k in talker.pipelines], value=talker.default_kind,
                                 label="Model", visible=len(talker.pipelines) > 1)
                with gr.Row():
                    steps = gr.Dropdown(steps_choices(pipe), value=pipe.default_steps, label="Denoising steps",
                                        elem_id="steps", info="the distillation ladder: fewer steps, faster")
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                identity = gr.Dropdown(identity_choices(pipe), value=AUTO, label="Identity (speaking style)")
                with gr.Row(visible=False) as mix_row:
                    mix_a = gr.Dropdown(names, value=names[0] if names else None, label="Mix: first", min_width=100)
                    mix_b = gr.Dropdown(names, value=names[min(1, len(names) - 1)] if names else None,
                                        label="Mix: second", min_width=100)
                    mix_weight = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Weight of second",
                                           min_width=120)
                emotion = gr.Dropdown(emotion_choices(pipe), value=AUTO, label="Emotion",
                                      info="auto: read from the audio; or choose one the model learned",
                                      visible=bool(pipe.emotion_names), elem_id="emotion")
                with gr.Row():
                    num_samples = gr.Slider(1, 4, value=1, step=1, label="Diversity samples", elem_id="samples")
                    compare = gr.Checkbox(value=False, label="Compare with teacher", interactive=multi,
                                          info=f"run the {pipe.teacher_steps}-step teacher too" if multi
                                          else "this checkpoint has a single model")
                run = gr.Button("Generate", variant="primary", elem_id="generate")
                examples = example_files()
                if examples:
                    gr.Examples(examples=[[p] for p in examples], inputs=[audio], label="Example clips",
                                example_labels=[Path(p).stem for p in examples])
            with gr.Column(scale=3, min_width=360):
                with gr.Row(equal_height=False):
                    # the live WebGL preview shows the result first; the mp4 follows (the download path)
                    with gr.Column(scale=3, min_width=300):  # (gr.HTML ignores scale)
                        preview = preview_component()  # (diffusiontalker.render.preview)
                    video = gr.Video(label="Video (mp4)", elem_id="main-video", interactive=False, scale=2,
                                     min_width=240)
                # grid tiles carry their own labels (steps, time, seed): gradio's floating label would cover them
                compare_md = gr.Markdown(visible=False, label="Speed-up")
                compare_video = gr.Video(label="Teacher vs student", show_label=False, visible=False,
                                         interactive=False, elem_id="compare-video")
                diversity_video = gr.Video(label="Diversity samples", show_label=False, visible=False,
                                           interactive=False, elem_id="diversity-video")
                with gr.Row():
                    scores = gr.Label(label="Identity match (from the audio)", num_top_classes=5)
                    downloads = gr.File(label="Downloads: mp4 · npy + json · Live Link CSV · GLB",
                                        file_count="multiple", interactive=False)
                plot = gr.Plot(label="Key channels over time")
                timings = gr.Markdown(label="Timings", elem_id="timings")

        def on_model(kind: str):
            p = talker.pipeline(kind)
            n = p.identity_names
            return (gr.update(choices=steps_choices(p), value=p.default_steps),
                    gr.update(choices=identity_choices(p), value=AUTO),
                    gr.update(choices=n, value=n[0] if n else None),
                    gr.update(choices=n, value=n[min(1, len(n) - 1)] if n else None),
                    gr.update(interactive=len(p.available_steps) > 1),
                    gr.update(visible=False),
                    gr.update(choices=emotion_choices(p), value=AUTO, visible=bool(p.emotion_names)))

        model.change(on_model, inputs=model, outputs=[steps, identity, mix_a, mix_b, compare, mix_row, emotion],
                     api_name=False, queue=False)
        identity.change(lambda c: gr.update(visible=c == MIX), inputs=identity, outputs=mix_row, api_name=False,
                        queue=False)
        run.click(talker.generate,
                  inputs=[audio, model, steps, identity, mix_a, mix_b, mix_weight, num_samples, seed, compare,
                          emotion],
                  outputs=[video, preview, compare_video, compare_md, diversity_video, scores, plot, timings,
                           downloads],
                  api_name="generate", show_progress_on=[video])
    demo.talker = talker
    return demo


def launch_options(host: str = "127.0.0.1", port: int = 7860, share: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``demo.launch`` (theme and CSS go to launch in Gradio 6)."""
    return dict(server_name=host, server_port=port, share=share, show_error=True, css=CSS,
                theme=gr.themes.Soft(primary_hue="indigo"),
                allowed_paths=[str(EXAMPLES_DIR)] if EXAMPLES_DIR.is_dir() else None, max_file_size=MAX_UPLOAD)


def _default_host() -> str:
    if os.environ.get("GRADIO_SERVER_NAME"):
        return os.environ["GRADIO_SERVER_NAME"]
    on_spaces = bool(os.environ.get("SPACE_ID")) or os.environ.get("SYSTEM") == "spaces"
    return "0.0.0.0" if on_spaces else "127.0.0.1"


def _load(path: Path, flag: str) -> Pipeline:
    if not path.is_dir():
        hint = ("run `make default-model` to build the default model, or pass --checkpoint DIR (or set "
                "DIFFUSIONTALKER_CHECKPOINT)") if flag == "--checkpoint" else f"pass an existing {flag} DIR"
        raise FileNotFoundError(f"no checkpoint at {path}: {hint}")
    return Pipeline.from_pretrained(path)


def main(argv: list[str] | None = None) -> int:
    """Parse flags, load the pipeline(s) once, queue and launch. Returns a process exit code."""
    parser = argparse.ArgumentParser(description="DiffusionTalker web app")
    parser.add_argument("--checkpoint", default=os.environ.get("DIFFUSIONTALKER_CHECKPOINT", DEFAULT_CHECKPOINT),
                        help="checkpoint or ladder dir (default: $DIFFUSIONTALKER_CHECKPOINT or checkpoints/default)")
    parser.add_argument("--vertex-checkpoint", default=None,
                        help=f"optional vertex-mesh checkpoint (default: {DEFAULT_VERTEX_CHECKPOINT} when present)")
    parser.add_argument("--host", default=_default_host(),
                        help="bind address (0.0.0.0 on Hugging Face Spaces, else 127.0.0.1)")
    parser.add_argument("--port", type=int,
                        default=int(os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT") or 7860))
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link (needs network)")
    parser.add_argument("--max-seconds", type=float, default=MAX_SECONDS, help="longest audio accepted")
    args = parser.parse_args(argv)

    try:
        pipeline = _load(Path(args.checkpoint), "--checkpoint")
        vertex_path = args.vertex_checkpoint or (DEFAULT_VERTEX_CHECKPOINT
                                                 if Path(DEFAULT_VERTEX_CHECKPOINT).is_dir() else None)
        vertex = _load(Path(vertex_path), "--vertex-checkpoint") if vertex_path else None
        pipeline.model()  # load the default rung now, not on the first request
        demo = build_demo(pipeline, vertex, max_seconds=args.max_seconds)
    except (FileNotFoundError, DiffusionTalkerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    demo.queue(default_concurrency_limit=2, max_size=16)
    demo.launch(**launch_options(args.host, args.port, args.share))
    return 0


if __name__ == "__main__":
    sys.exit(main())
