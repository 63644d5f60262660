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
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from diffusiontalker.animation import Animation  # noqa: E402
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

CSS = """
#title {text-align: center}
#preview:empty {display: none}
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


def timings_markdown(anim: Animation, render_s: float, wall_s: float, extra: list[str] | None = None) -> str:
    """Per-stage seconds and the real-time factor (wall time / audio duration; below 1 is faster than real time)."""
    t = anim.timings
    rtf = wall_s / max(anim.duration, 1e-6)

    def sec(x: float) -> str:
        return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"

    lines = [
        f"**{anim.duration:.1f} s of audio → {anim.num_frames} frames at {anim.fps:g} fps** · "
        f"model `{anim.model}` · identity `{anim.identity}`",
        "",
        "| decode | encode | identity | sample | render | total | real-time factor |",
        "|---|---|---|---|---|---|---|",
        f"| {sec(t.get('load', 0))} | {sec(t.get('encode', 0))} | {sec(t.get('match', 0))} | "
        f"{sec(t.get('sample', 0))} | {sec(render_s)} | {sec(wall_s)} | {rtf:.2f} |",
    ]
    lines += ["", f"Real-time factor = total ÷ audio length ({'faster' if rtf < 1 else 'slower'} than real time)."]
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
        self._render_lock = threading.Lock()  # one GL context renders at a time; sampling of others overlaps

    def pipeline(self, kind: str | None) -> Pipeline:
        return self.pipelines.get(kind or self.default_kind, self.pipelines[self.default_kind])

    def _request_dir(self) -> Path:
        """A fresh folder per request, so concurrent requests never mix files."""
        _remove_stale(self.output_root)
        return Path(tempfile.mkdtemp(prefix="req-", dir=self.output_root))

    def _render(self, fn, *args, **kwargs) -> tuple[Path, float]:
        with self._render_lock:
            tic = time.perf_counter()
            path = fn(*args, **kwargs)
            return Path(path), time.perf_counter() - tic

    # --- the one event --------------------------------------------------------------------------------------
    def generate(self, audio: str | None, kind: str | None, steps: int | str | None, identity: str | None,
                 mix_a: str | None, mix_b: str | None, mix_weight: float, num_samples: int | float, seed: int | float,
                 compare: bool, progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008 - gradio's idiom
        """Run one request; returns the values of the output components (see ``build_demo``).

        ``progress`` must default to a ``gr.Progress()`` instance: that default is how gradio knows to track it.
        """
        if not audio:
            raise gr.Error("Upload or record some speech first (wav, flac, ogg, mp3 or m4a).")
        try:
            return self._generate(audio, kind, steps, identity, mix_a, mix_b, mix_weight, int(num_samples),
                                  int(seed or 0), bool(compare), progress)
        except DiffusionTalkerError as e:
            raise gr.Error(str(e)) from e

    def _generate(self, audio: str, kind: str | None, steps: int | str | None, identity: str | None,
                  mix_a: str | None, mix_b: str | None, mix_weight: float, num_samples: int, seed: int,
                  compare: bool, progress: gr.Progress) -> tuple:
        from diffusiontalker.export import export_animation
        from diffusiontalker.render.video import render_animation, render_grid

        wall = time.perf_counter()
        pipe = self.pipeline(kind)
        steps = int(steps) if steps not in (None, "") else pipe.default_steps
        num_samples = int(np.clip(num_samples, 1, 4))
        spec = identity_spec(identity, mix_a, mix_b, mix_weight, pipe)
        do_compare = compare and len(pipe.available_steps) > 1 and steps != pipe.teacher_steps
        out = self._request_dir()
        stem = f"{_safe_stem(audio)}_{steps}steps_seed{seed}"
        progress(0.0, desc="loading model")
        pipe.model(steps)  # load (once) before timing anything, so timings measure generation only
        if do_compare:
            pipe.model(pipe.teacher_steps)

        # progress: sampling takes [0, r0), then the videos share [r0, 0.97) equally
        r0 = 0.3 if do_compare else 0.2
        n_videos = 1 + int(do_compare) + int(num_samples > 1)

        def sampling(lo: float, hi: float, what: str):
            return lambda f, d: progress(lo + (hi - lo) * f, desc=f"{what}: {d}")

        def rendering(k: int, desc: str) -> None:
            progress(r0 + (0.97 - r0) * k / n_videos, desc=desc)

        tic = time.perf_counter()
        anims = pipe(audio, steps=steps, identity=spec, num_samples=num_samples, seed=seed,
                     progress=sampling(0.0, 0.2, f"{steps}-step model"), max_seconds=self.max_seconds)
        main = anims[0]
        student, student_s = main, time.perf_counter() - tic

        teacher = None
        if do_compare:
            if num_samples > 1:  # time the student on one sample, as the teacher is
                tic = time.perf_counter()
                [student] = pipe(audio, steps=steps, identity=spec, num_samples=1, seed=seed,
                                 max_seconds=self.max_seconds)
                student_s = time.perf_counter() - tic
            tic = time.perf_counter()
            [teacher] = pipe(audio, steps=pipe.teacher_steps, identity=spec, num_samples=1, seed=seed,
                             progress=sampling(0.2, r0, f"teacher ({pipe.teacher_steps} steps)"),
                             max_seconds=self.max_seconds)
            teacher_s = time.perf_counter() - tic

        rendering(0, f"rendering the video ({self.main_size} px)")
        video, render_s = self._render(render_animation, main, out / f"{stem}.mp4", size=self.main_size)
        extra: list[str] = []

        compare_video = None
        compare_md = ""
        if teacher is not None:
            rendering(1, "rendering teacher vs student")
            labels = [f"teacher · {pipe.teacher_steps} steps · {teacher_s:.2f} s",
                      f"student · {steps} steps · {student_s:.2f} s"]
            compare_video, _ = self._render(render_grid, [teacher, student], out / f"{stem}_teacher_vs_student.mp4",
                                            labels=labels, size=self.tile_size, cols=2, audio=main.audio)
            speedup = teacher_s / max(student_s, 1e-9)
            sample_speedup = teacher.timings.get("sample", 0.0) / max(student.timings.get("sample", 0.0), 1e-9)
            compare_md = ("#### Teacher vs student\n"
                          f"**Speed-up: {speedup:.1f}×** end to end ({teacher_s:.2f} s → {student_s:.2f} s); "
                          f"{sample_speedup:.1f}× in the denoising loop "
                          f"({pipe.teacher_steps} → {steps} steps, same seed and identity).")
        elif compare:
            compare_md = ("Nothing to compare: this checkpoint has a single model."
                          if len(pipe.available_steps) == 1 else
                          f"You chose the teacher ({steps} steps); choose a student's steps to compare with it.")

        diversity_video = None
        if num_samples > 1:
            rendering(n_videos - 1, f"rendering {num_samples} diversity samples")
            diversity_video, div_s = self._render(
                render_grid, anims, out / f"{stem}_diversity.mp4", labels=[f"seed {a.seed}" for a in anims],
                size=self.tile_size, cols=2 if num_samples == 4 else None, audio=main.audio)
            extra.append(f"Diversity grid: {num_samples} samples (seeds {seed}–{seed + num_samples - 1}), "
                         f"rendered in {div_s:.2f} s.")

        progress(0.97, desc="exporting files")
        files = [str(video)]
        formats = [".npy", ".csv", ".glb"] if main.kind == "blendshape" else [".npy", ".glb"]
        for suffix in formats:
            try:
                path = Path(export_animation(main, out / f"{stem}{suffix}"))
            except DiffusionTalkerError as e:
                extra.append(f"{suffix[1:]} export unavailable: {e}")
                continue
            files.append(str(path))
            if suffix == ".npy":  # names/metadata json, and the template/faces of vertex animations
                files += [str(path.with_suffix(s)) for s in (".json", ".template.npy", ".faces.npy")
                          if path.with_suffix(s).exists()]

        wall_s = time.perf_counter() - wall
        timings = timings_markdown(main, render_s, wall_s, extra)
        scores = {k: float(v) for k, v in main.identity_scores.items()}
        progress(1.0, desc="done")
        return (
            str(video),
            preview_html(anims),
            gr.update(value=str(compare_video) if compare_video else None, visible=compare_video is not None),
            gr.update(value=compare_md, visible=bool(compare_md)),
            gr.update(value=str(diversity_video) if diversity_video else None, visible=diversity_video is not None),
            scores,
            channel_plot(main),
            timings,
            files,
        )


def preview_html(anims: list[Animation]) -> str:
    """Hook for the WebGL live preview (``diffusiontalker.render.preview``): HTML for the ``#preview`` element.

    Returns "" while no player is installed or when it fails: the preview is a bonus, the mp4 is the result.
    """
    try:
        from diffusiontalker.render import preview
    except ImportError:
        return ""
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
    return gr.HTML("", label="Live preview", elem_id="preview", head=head, js_on_load=js)


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
            "steps and a speaker identity, and get an animated head with downloadable ARKit curves.",
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
                    video = gr.Video(label="Animation", elem_id="main-video", interactive=False, min_width=280)
                    preview = preview_component()  # WebGL live preview (diffusiontalker.render.preview)
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
                    gr.update(visible=False))

        model.change(on_model, inputs=model, outputs=[steps, identity, mix_a, mix_b, compare, mix_row],
                     api_name=False, queue=False)
        identity.change(lambda c: gr.update(visible=c == MIX), inputs=identity, outputs=mix_row, api_name=False,
                        queue=False)
        run.click(talker.generate,
                  inputs=[audio, model, steps, identity, mix_a, mix_b, mix_weight, num_samples, seed, compare],
                  outputs=[video, preview, compare_video, compare_md, diversity_video, scores, plot, timings,
                           downloads],
                  api_name="generate", show_progress_on=[video])
    demo.talker = talker
    return demo


def launch_options(host: str = "127.0.0.1", port: int = 7860, share: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``demo.launch`` (theme and CSS go to launch in Gradio 6)."""
    return dict(server_name=host, server_port=port, share=share, show_error=True, css=CSS,
                theme=gr.themes.Soft(primary_hue="indigo"),
                allowed_paths=[str(EXAMPLES_DIR)] if EXAMPLES_DIR.is_dir() else None)


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
