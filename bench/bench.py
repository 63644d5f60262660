"""Speed and memory of DiffusionTalker measured in one run on this machine -> ``BENCHMARKS.md``.

    python -m bench.bench                          # make bench: checkpoints/default, 10 s clip, ~10 minutes
    python -m bench.bench --quick --checkpoint DIR # a short clip and few repetitions (a smoke run)

Every figure is the median of several repetitions after a warm-up; candidates that are compared are run
interleaved (a, b, a, b, ...) so a change in machine load hits them alike, and every speed-up is a ratio of two
figures measured in this same run. Sections:

1. end-to-end generation (``Pipeline.__call__``) for the teacher and each rung of the ladder; rungs the checkpoint
   does not ship are timed as the teacher network sampled with plain DDIM at that step count (same network, same
   cost per step);
2. a FaceDiffuser-style baseline: the audio encoder re-run at every step and 1024-step ancestral DDPM;
3. real-time factor and the audio encoder's share, for ``mel`` and a random-initialised HuBERT-base encoder;
4. N diversity samples in one batch vs one sample;
5. render + encode frames per second (``render_animation``), split into render-only and encode-only;
6. the app's click-to-video time (the Generate button's callback, called directly);
7. peak RSS of a generation process (a child process per clip length) and a 5-minute clip's generation time;
8. a bi-GRU denoiser (FaceDiffuser's choice) vs the band-limited transformer at a similar parameter count;
9. the browser player's figures, from ``bench/player_fps.json`` when the player's benchmark wrote it.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffusiontalker.audio import SAMPLE_RATE, load_audio, num_frames, save_wav
from diffusiontalker.checkpoint import read_ladder
from diffusiontalker.config import ModelConfig
from diffusiontalker.config import replace as config_replace
from diffusiontalker.denoiser import timestep_embedding
from diffusiontalker.diffusion import sample
from diffusiontalker.model import TalkerModel
from diffusiontalker.pipeline import Pipeline
from diffusiontalker.schedule import NoiseSchedule

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = REPO / "checkpoints" / "default"
DEFAULT_OUT = REPO / "BENCHMARKS.md"
PLAYER_JSON = Path(__file__).resolve().parent / "player_fps.json"
SECTIONS = ("generation", "baseline", "rtf", "diversity", "render", "app", "memory", "gru", "player")

# the goals of issue 8 (and issue 11 for the browser player)
GOAL_SPEEDUP = 60.0  # student-8 end-to-end vs teacher-512
GOAL_RTF = 0.02  # generation seconds per audio second with the mel encoder
GOAL_DIVERSITY = 1.6  # N=4 samples batched vs 1 sample
GOAL_RENDER_FPS = 60.0  # render + encode at 512²
GOAL_CLICK_S = 8.0  # app click-to-video for a 10 s clip with 8 steps
GOAL_RSS_MIB = 1536.0  # 1.5 GiB peak RSS
GOAL_FIRST_FRAME_MS = 1000.0  # browser player: first preview frame after sampling ends


@dataclass
class Settings:
    """What to measure and how often. ``quick_settings()`` gives the smoke-run variant."""

    clip_seconds: float = 10.0  # the clip of every section except the long-audio one
    long_seconds: float = 300.0  # the long clip of the memory section
    reps: int = 5  # repetitions of fast measurements (after ``warmup`` untimed runs)
    slow_reps: int = 3  # repetitions of slow ones (baseline, render, app, long clip)
    warmup: int = 1
    student_steps: int = 8  # the rung the goals speak of
    baseline_steps: int = 1024  # FaceDiffuser-style ancestral DDPM steps
    diversity: int = 4  # samples drawn in one batch
    render_sizes: tuple[int, ...] = (256, 512)
    hubert_config: dict | None = None  # None: transformers' HubertConfig() defaults (HuBERT-base size)
    app_size: int | None = None  # main video size of the app section (None: the app's own)
    gru_layers: int = 2
    sections: tuple[str, ...] = SECTIONS
    quick: bool = False


def quick_settings(**overrides: Any) -> Settings:
    """A short clip and few repetitions: for smoke runs and tests (the figures are noisy)."""
    base = Settings(clip_seconds=2.0, long_seconds=45.0, reps=2, slow_reps=1, warmup=1, quick=True)
    return dataclasses.replace(base, **overrides)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- timing --------------------------------------------------------------------------------------------------------
@dataclass
class Runs:
    """Wall-clock seconds of the timed repetitions of one candidate, and what each returned."""

    times: list[float] = field(default_factory=list)
    outputs: list[Any] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def median_of(self, fn: Callable[[Any], float]) -> float:
        return statistics.median(fn(o) for o in self.outputs)


def measure(candidates: dict[Any, Callable[[], Any]], reps: int, warmup: int = 1) -> dict[Any, Runs]:
    """Time each candidate ``reps`` times after ``warmup`` untimed calls, interleaving the candidates."""
    runs = {k: Runs() for k in candidates}
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    for _ in range(max(1, reps)):
        for k, fn in candidates.items():
            tic = time.perf_counter()
            out = fn()
            runs[k].times.append(time.perf_counter() - tic)
            runs[k].outputs.append(out)
    return runs


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB.

    On Linux this is ``VmHWM`` of ``/proc/self/status``: the high-water mark of this process's own address space.
    ``getrusage(RUSAGE_SELF).ru_maxrss`` survives ``execve``, so a child started from a large process reports its
    parent's peak; ru_maxrss (KiB on Linux, bytes on macOS) is used only where /proc is missing.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB -> MiB
    except (OSError, ValueError, IndexError):
        pass
    return maxrss_mib()


def maxrss_mib() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in MiB (inherited across execve: see :func:`peak_rss_mib`)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


# --- inputs --------------------------------------------------------------------------------------------------------
def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced signal with a wandering pitch and ~4 syllables per second (used when no example clips exist)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 130.0 + 25.0 * np.sin(2 * np.pi * 0.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 9))
    envelope = np.clip(np.sin(2 * np.pi * 2.0 * t + rng.uniform(0, np.pi)), 0, None) ** 0.7
    return (0.2 * voice * envelope + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def bench_audio(seconds: float) -> tuple[np.ndarray, str]:
    """(N,) float32 at 16 kHz of exactly ``seconds``: the example clips tiled, else a synthetic signal."""
    examples = sorted((REPO / "assets" / "examples").glob("*.wav"))
    n = int(round(seconds * SAMPLE_RATE))
    if examples:
        wav = np.concatenate([load_audio(p) for p in examples])
        source = f"assets/examples/*.wav ({len(examples)} clips, {len(wav) / SAMPLE_RATE:.1f} s, tiled)"
    else:
        wav = speechlike(min(seconds, 60.0))
        source = "a synthetic speech-like signal (no assets/examples/*.wav found)"
    return np.resize(wav, n).astype(np.float32), source


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        cpu = platform.processor() or "unknown"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    def git(*args: str) -> str:
        try:
            proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20)
            return proc.stdout.strip() if proc.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "usable_cores": usable,
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit, "load_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")}


def ladder_steps(teacher: int) -> list[int]:
    """teacher, teacher/2, ..., 1 (the nested power-of-two grids)."""
    out, n = [], teacher
    while n >= 1:
        out.append(n)
        n //= 2
    return out


# --- 1. generation -------------------------------------------------------------------------------------------------
def bench_generation(checkpoint: Path, wav_path: Path, s: Settings) -> tuple[dict, Pipeline]:
    """Pipeline calls for every rung teacher … 1; unshipped rungs use the teacher network with plain DDIM."""
    shipped = read_ladder(checkpoint)
    teacher = max(shipped)
    steps = ladder_steps(teacher)
    pipe = Pipeline({n: shipped.get(n, shipped[teacher]) for n in steps})

    def call(n: int) -> Callable[[], Any]:
        return lambda: pipe(wav_path, steps=n, identity="auto", num_samples=1, seed=0)[0]

    runs = measure({n: call(n) for n in steps}, s.reps, s.warmup)
    rows = []
    for n in steps:
        r = runs[n]
        source = "teacher" if n == teacher else "student (shipped)" if n in shipped else "teacher network, plain DDIM"
        rows.append({"steps": n, "source": source, "time": r.median,
                     **{k: r.median_of(lambda a, k=k: a.timings[k]) for k in ("load", "encode", "match", "sample")}})
    t0 = rows[0]
    for row in rows:
        row["speedup"] = t0["time"] / row["time"]
        row["sample_speedup"] = t0["sample"] / row["sample"]
    return {"teacher_steps": teacher, "shipped": sorted(shipped, reverse=True), "rows": rows}, pipe


def generation_row(gen: dict, steps: int) -> dict:
    return next(r for r in gen["rows"] if r["steps"] == steps)


def student_steps(gen: dict, s: Settings) -> int:
    """The rung the goals speak of (8), or the nearest one this ladder has."""
    avail = [r["steps"] for r in gen["rows"]]
    return s.student_steps if s.student_steps in avail else min(avail, key=lambda n: abs(n - s.student_steps))


# --- 2. FaceDiffuser-style baseline --------------------------------------------------------------------------------
def bench_baseline(pipe: Pipeline, wav: np.ndarray, teacher: int, s: Settings) -> dict:
    """Encode-every-step + ancestral DDPM on the ``baseline_steps`` grid vs encode once, with the teacher network."""
    model = pipe.model(teacher)
    schedule = NoiseSchedule(pipe.config.diffusion.num_train_timesteps)
    grid = schedule.grid(s.baseline_steps)  # raises ConfigError if the grid is not valid
    calls = {"encoder": 0}

    def run(reencode: bool) -> torch.Tensor:
        feats, mask = pipe.encode(wav, teacher)
        scores = pipe.match_identity(feats, mask, teacher)
        id_vec, _ = pipe.identity_vector("auto", scores, teacher)
        emo, _ = pipe.emotion_vector("auto", pipe.read_emotion(feats, mask, teacher, scores, wav))
        gen = torch.Generator().manual_seed(0)
        noise = torch.randn(1, feats.shape[1], model.cfg.motion_dim, generator=gen)

        def fresh() -> torch.Tensor:
            calls["encoder"] += 1
            return pipe.encode(wav, teacher)[0]

        x = sample(model, schedule, feats, mask, id_vec[None], s.baseline_steps, noise, sampler="ddpm",
                   generator=gen, reencode=fresh if reencode else None, emotion=None if emo is None else emo[None])
        return model.denormalise(x)

    runs = measure({"reencode": lambda: run(True), "once": lambda: run(False)}, s.slow_reps, warmup=0)
    finite = all(bool(torch.isfinite(o).all()) for r in runs.values() for o in r.outputs)
    return {"steps": s.baseline_steps, "grid_len": len(grid), "grid_ends": (grid[0], grid[-1]),
            "reencode": runs["reencode"].median, "once": runs["once"].median, "finite": finite,
            "encoder_calls_per_run": calls["encoder"] // max(1, len(runs["reencode"].times))}


# --- 3. real-time factor -------------------------------------------------------------------------------------------
@torch.no_grad()
def generate_stages(model: TalkerModel, schedule: NoiseSchedule, wav_path: Path, steps: int) -> dict[str, float]:
    """The Pipeline's stages for one clip shorter than a window (decode, encode, match, sample), each timed."""
    tic = time.perf_counter()
    wav = load_audio(wav_path)
    t_load = time.perf_counter()
    audio = torch.from_numpy(wav)[None]  # (1, N)
    feats, mask = model.encode(audio, torch.tensor([len(wav)]), torch.tensor([num_frames(len(wav))]))
    t_enc = time.perf_counter()
    probs = model.identity.match(feats, mask)[0]  # (K,)
    id_vec = model.identity.embed(probs.argmax()[None])  # (1, E)
    emotion = model.read_emotion(audio, None, feats, mask, id_vec)  # (1, K) or None
    t_match = time.perf_counter()
    noise = torch.randn(1, feats.shape[1], model.cfg.motion_dim, generator=torch.Generator().manual_seed(0))
    model.denormalise(sample(model, schedule, feats, mask, id_vec, steps, noise, emotion=emotion))
    t_end = time.perf_counter()
    return {"load": t_load - tic, "encode": t_enc - t_load, "match": t_match - t_enc, "sample": t_end - t_match,
            "total": t_end - tic}


def hubert_model(base: ModelConfig, student: TalkerModel, hubert_config: dict | None) -> TalkerModel:
    """The student's network with a random-initialised HuBERT encoder (built from its config: no download)."""
    from transformers import HubertConfig

    cfg = config_replace(base, encoder="hubert", encoder_path=None,
                         encoder_config=hubert_config if hubert_config is not None else HubertConfig().to_dict())
    torch.manual_seed(0)
    model = TalkerModel(cfg)
    state = {k: v for k, v in student.state_dict().items() if not k.startswith("encoder.")}
    model.load_state_dict(state, strict=False)  # same denoiser and identity library: only the encoder differs
    return model.eval()


def bench_rtf(pipe: Pipeline, steps: int, wav_path: Path, s: Settings) -> dict:
    student = pipe.model(steps)
    schedule = NoiseSchedule(pipe.config.diffusion.num_train_timesteps)
    hubert = hubert_model(student.cfg, student, s.hubert_config)
    models = {"mel": student, "hubert": hubert}
    runs = measure({k: (lambda m=m: generate_stages(m, schedule, wav_path, steps)) for k, m in models.items()},
                   s.reps, s.warmup)
    rows = {}
    for k, m in models.items():
        r = runs[k]
        row = {stage: r.median_of(lambda o, stage=stage: o[stage]) for stage in ("load", "encode", "match", "sample")}
        row["time"] = r.median
        row["rtf"] = r.median / s.clip_seconds
        row["encoder_share"] = row["encode"] / r.median
        row["encoder_params"] = sum(p.numel() for p in m.encoder.parameters())
        rows[k] = row
    return {"steps": steps, "rows": rows}


# --- 4. diversity --------------------------------------------------------------------------------------------------
def bench_diversity(pipe: Pipeline, steps: int, wav_path: Path, s: Settings) -> dict:
    n = s.diversity

    def call(k: int) -> Callable[[], Any]:
        return lambda: pipe(wav_path, steps=steps, identity="auto", num_samples=k, seed=0)

    runs = measure({1: call(1), n: call(n)}, s.reps, s.warmup)
    out = {"steps": steps, "n": n}
    for k in (1, n):
        out[k] = {"time": runs[k].median, "sample": runs[k].median_of(lambda a: a[0].timings["sample"])}
    out["ratio"] = out[n]["time"] / out[1]["time"]
    out["sample_ratio"] = out[n]["sample"] / out[1]["sample"]
    return out


# --- 5. render -----------------------------------------------------------------------------------------------------
def bench_render(anim: Any, sizes: list[int], tmp: Path, s: Settings) -> dict:
    """render_animation (render + H.264/AAC encode) per size, and the same split into render-only and encode-only."""
    from diffusiontalker.render.video import grid_frames, render_animation, write_video

    frames: dict[int, list[np.ndarray]] = {}

    def combined(size: int) -> Callable[[], Any]:
        return lambda: render_animation(anim, tmp / f"render_{size}.mp4", size=size)

    def render_only(size: int) -> Callable[[], Any]:
        def run() -> None:
            frames[size] = list(grid_frames([anim], labels=[""], size=size))  # each frame a fresh (H, W, 3) array
        return run

    def encode_only(size: int) -> Callable[[], Any]:
        return lambda: write_video(frames[size], tmp / f"encode_{size}.mp4", anim.fps, anim.audio)

    cands: dict[Any, Callable[[], Any]] = {}
    for size in sizes:
        cands[("both", size)] = combined(size)
        cands[("render", size)] = render_only(size)
        cands[("encode", size)] = encode_only(size)
    runs = measure(cands, s.slow_reps, s.warmup)
    rows = []
    for size in sizes:
        t = {k: runs[(k, size)].median for k in ("both", "render", "encode")}
        rows.append({"size": size, "frames": anim.num_frames, **t,
                     **{f"fps_{k}": anim.num_frames / v for k, v in t.items()}})
    frames.clear()
    return {"rows": rows}


# --- 6. app --------------------------------------------------------------------------------------------------------
def load_app() -> tuple[Any, str]:
    """The app module when it exposes the Generate callback (``Talker.generate``), else (None, why)."""
    try:
        import app
    except Exception as e:  # noqa: BLE001 - any import failure means "measure the fallback"
        return None, f"app.py could not be imported ({type(e).__name__}: {e})"
    if not hasattr(app, "Talker"):
        return None, "app.py exposes no Talker.generate callback"
    return app, ""


def bench_app(app_mod: Any, why: str, checkpoint: Path, wav_path: Path, tmp: Path, s: Settings) -> dict:
    """Click-to-video: the Generate callback called directly (no browser), or Pipeline + render_animation.

    Its two big parts, generating and rendering the main video, are timed alone in the same interleaved rounds, so
    the note can say which one limits the click.
    """
    from diffusiontalker.render.video import render_animation

    pipe = Pipeline.from_pretrained(checkpoint)
    steps = s.student_steps if s.student_steps in pipe.available_steps else pipe.default_steps
    size = s.app_size or 512

    def generate() -> Any:
        return pipe(wav_path, steps=steps)[0]

    anim = generate()

    def render() -> Any:
        return render_animation(anim, tmp / "app_render.mp4", size=size)

    def fallback() -> Any:
        return render_animation(generate(), tmp / "click.mp4", size=size)

    click, method = fallback, f"Pipeline + render_animation at {size}² ({why})"
    if app_mod is not None:
        kwargs = {"main_size": s.app_size} if s.app_size else {}
        talker = app_mod.Talker(pipe, output_root=tmp / "app", **kwargs)
        size = int(getattr(talker, "main_size", getattr(app_mod, "MAIN_SIZE", size)))

        def app_click() -> float:
            """Run the callback to its end (it may stream updates); returns the seconds to its first update."""
            tic = time.perf_counter()
            out = talker.generate(str(wav_path), None, steps, app_mod.AUTO, None, None, 0.5, 1, 0, False,
                                  progress=lambda *a, **k: None)
            first = None
            if inspect.isgenerator(out):  # a streaming callback: preview first, the mp4 with the last update
                for _ in out:
                    first = time.perf_counter() - tic if first is None else first
            return first if first is not None else time.perf_counter() - tic

        try:
            app_click()
            click, method = app_click, f"`app.Talker.generate` (the Generate button's callback; main video {size}²)"
        except Exception as e:  # noqa: BLE001 - the app may change; measure the equivalent path instead
            method = f"Pipeline + render_animation at {size}² (the app callback failed: {type(e).__name__}: {e})"
    runs = measure({"click": click, "generate": generate, "render": render}, s.slow_reps, s.warmup)
    firsts = [o for o in runs["click"].outputs if isinstance(o, float)]
    return {"time": runs["click"].median, "generate": runs["generate"].median, "render": runs["render"].median,
            "first_update": statistics.median(firsts) if firsts else None, "steps": steps, "size": size,
            "method": method}


# --- 7. memory (child processes) -----------------------------------------------------------------------------------
def child_main(checkpoint: str, wav_path: str, steps: int, reps: int) -> dict:
    """Run in a fresh process: load, warm up, generate ``reps`` times; report peak RSS (MiB) after the imports,
    after loading and at the end, and the median generation time."""
    rss_import = peak_rss_mib()
    pipe = Pipeline.from_pretrained(checkpoint)
    steps = steps if steps in pipe.available_steps else pipe.default_steps
    pipe.model(steps)
    rss_loaded = peak_rss_mib()
    wav = pipe.load(wav_path)
    pipe(wav[:SAMPLE_RATE], sr=SAMPLE_RATE, steps=steps)  # warm-up on 1 s
    times = []
    for _ in range(max(1, reps)):
        tic = time.perf_counter()
        anim = pipe(wav_path, steps=steps)[0]
        times.append(time.perf_counter() - tic)
    return {"rss_import": rss_import, "rss_loaded": rss_loaded, "rss_peak": peak_rss_mib(),
            "ru_maxrss": maxrss_mib(),
            "time": statistics.median(times), "audio_seconds": len(wav) / SAMPLE_RATE, "frames": anim.num_frames,
            "steps": steps, "finite": bool(np.isfinite(anim.values).all())}


def run_child(checkpoint: Path, wav_path: Path, steps: int, reps: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "bench.bench", "--child", str(wav_path), "--checkpoint", str(checkpoint),
           "--steps", str(steps), "--reps", str(reps), "--threads", str(torch.get_num_threads())]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child process failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_memory(checkpoint: Path, short_path: Path, long_path: Path, steps: int, s: Settings) -> dict:
    return {"short": run_child(checkpoint, short_path, steps, s.reps),
            "long": run_child(checkpoint, long_path, steps, s.slow_reps)}


# --- 8. bi-GRU vs transformer --------------------------------------------------------------------------------------
class BiGRUDenoiser(nn.Module):
    """A FaceDiffuser-style x0 denoiser for this comparison only: the same inputs and conditioning as
    :class:`~diffusiontalker.denoiser.Denoiser` (audio concatenated at the input, time + identity added), then a
    stack of bidirectional GRU layers instead of band-limited attention."""

    def __init__(self, motion_dim: int, audio_dim: int, identity_dim: int, hidden: int, layers: int):
        super().__init__()
        self.hidden = hidden
        self.input = nn.Linear(motion_dim + audio_dim, hidden)
        self.time_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.identity_proj = nn.Linear(identity_dim, hidden)
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.output = nn.Linear(2 * hidden, motion_dim)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, audio: torch.Tensor, identity: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """x_t (B, T, D), t (B,), audio (B, T, C), identity (B, E), mask (B, T) -> x0 (B, T, D)."""
        cond = F.silu(self.time_mlp(timestep_embedding(t, self.hidden)) + self.identity_proj(identity))  # (B, H)
        h = self.input(torch.cat([x_t, audio], dim=-1)) + cond[:, None]  # (B, T, H)
        y, _ = self.gru(h)  # (B, T, 2H)
        return self.output(y) * mask[..., None]


def matched_gru(cfg: ModelConfig, target_params: int, layers: int) -> BiGRUDenoiser:
    """The bi-GRU whose hidden size (a multiple of 4) brings its parameter count closest to ``target_params``."""
    def build(h: int) -> BiGRUDenoiser:
        return BiGRUDenoiser(cfg.motion_dim, cfg.audio_dim, cfg.identity_dim, h, layers)

    def count(h: int) -> int:
        return sum(p.numel() for p in build(h).parameters())

    lo, hi = 4, 4
    while count(hi) < target_params and hi < 4096:
        lo, hi = hi, hi * 2
    while hi - lo > 4:  # bisect on multiples of 4
        mid = (lo + hi) // 8 * 4
        lo, hi = (mid, hi) if count(mid) < target_params else (lo, mid)
    best = min((lo, hi), key=lambda h: abs(count(h) - target_params))
    return build(best).eval()


@torch.no_grad()
def bench_gru(transformer: nn.Module, cfg: ModelConfig, frames: int, s: Settings) -> dict:
    params = sum(p.numel() for p in transformer.parameters())
    gru = matched_gru(cfg, params, s.gru_layers)
    nets = {"transformer": transformer.eval(), "gru": gru}
    gen = torch.Generator().manual_seed(0)
    inputs = {}
    for b in sorted({1, s.diversity}):
        inputs[b] = (torch.randn(b, frames, cfg.motion_dim, generator=gen), torch.full((b,), 500, dtype=torch.long),
                     torch.randn(b, frames, cfg.audio_dim, generator=gen),
                     torch.randn(b, cfg.identity_dim, generator=gen), torch.ones(b, frames, dtype=torch.bool))
    # the transformer of a model with an emotion head is given the emotion weights the pipeline would pass (the
    # GRU stands for FaceDiffuser's denoiser, which has none)
    heads = len(cfg.emotion_names) if getattr(transformer, "emotion_head", None) is not None else 0

    extras = {(k, b): ({"emotion": torch.full((b, heads), 1.0 / heads)} if k == "transformer" and heads else {})
              for k in nets for b in inputs}
    runs = measure({(k, b): (lambda n=n, x=x, e=extras[(k, b)]: n(*x, **e)) for k, n in nets.items()
                    for b, x in inputs.items()}, s.reps, s.warmup)
    rows = []
    for b in inputs:
        tr = runs[("transformer", b)].median
        for k, n in nets.items():
            t = runs[(k, b)].median
            rows.append({"network": k, "params": sum(p.numel() for p in n.parameters()), "batch": b, "time": t,
                         "ratio": t / tr})
    return {"frames": frames, "hidden": gru.hidden, "layers": s.gru_layers, "rows": rows}


# --- 9. browser player ---------------------------------------------------------------------------------------------
def read_player(path: Path = PLAYER_JSON) -> dict | None:
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        return {"error": f"{path.name} could not be read: {e}"}
    return doc if isinstance(doc, dict) else {"error": f"{path.name} is not a JSON object"}


# --- the run -------------------------------------------------------------------------------------------------------
def _shown_path(path: str | os.PathLike) -> str:
    """A path as the report shows it: relative to the repository when inside it (no machine-specific prefix)."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(path)


def run(checkpoint: str | os.PathLike = DEFAULT_CHECKPOINT, settings: Settings | None = None,
        out: str | os.PathLike | None = DEFAULT_OUT, player_json: str | os.PathLike = PLAYER_JSON) -> dict:
    """Measure every section of ``settings.sections`` and write the markdown to ``out`` (None: don't write).

    ``player_json`` is read for the browser player's section when it exists.

    Returns the results (the data behind the markdown, which is ``results["markdown"]``).
    """
    s = settings or Settings()
    checkpoint = Path(checkpoint)
    read_ladder(checkpoint)  # fail early, with the checkpoint's own error message
    results: dict[str, Any] = {"settings": dataclasses.asdict(s), "machine": machine_info(),
                               "checkpoint": _shown_path(checkpoint)}
    wanted = set(s.sections)
    with tempfile.TemporaryDirectory(prefix="dt_bench_") as tmp_name:
        tmp = Path(tmp_name)
        wav, source = bench_audio(s.clip_seconds)
        wav_path = save_wav(tmp / "clip.wav", wav)
        wav = load_audio(wav_path)  # what the pipeline sees (16-bit PCM round trip)
        results["clip"] = {"seconds": s.clip_seconds, "source": source}

        log(f"generation: ladder on a {s.clip_seconds:g} s clip")
        gen, pipe = bench_generation(checkpoint, wav_path, s)
        results["generation"] = gen
        teacher = gen["teacher_steps"]
        steps = student_steps(gen, s)
        results["student_steps"] = steps

        if "baseline" in wanted:
            log(f"baseline: {s.baseline_steps}-step DDPM with and without re-encoding")
            results["baseline"] = bench_baseline(pipe, wav, teacher, s)
        if "rtf" in wanted:
            log("real-time factor: mel vs HuBERT-base (random init)")
            results["rtf"] = bench_rtf(pipe, steps, wav_path, s)
        if "diversity" in wanted:
            log(f"diversity: {s.diversity} samples vs 1")
            results["diversity"] = bench_diversity(pipe, steps, wav_path, s)
        if "gru" in wanted:
            log("denoiser: bi-GRU vs band-limited transformer")
            results["gru"] = bench_gru(pipe.model(teacher).denoiser, pipe.model(teacher).cfg,
                                       num_frames(len(wav)), s)
        if "render" in wanted:
            log(f"render + encode at {list(s.render_sizes)}")
            anim = pipe(wav_path, steps=steps)[0]
            results["render"] = bench_render(anim, list(s.render_sizes), tmp, s)
        if "app" in wanted:
            log("app click-to-video")
            app_mod, why = load_app()
            results["app"] = bench_app(app_mod, why, checkpoint, wav_path, tmp, s)
        del pipe
        if "memory" in wanted:
            long_wav, _ = bench_audio(s.long_seconds)
            long_path = save_wav(tmp / "long.wav", long_wav)
            log(f"memory: child processes on {s.clip_seconds:g} s and {s.long_seconds:g} s")
            results["memory"] = bench_memory(checkpoint, wav_path, long_path, steps, s)
    if "player" in wanted:
        results["player"] = read_player(Path(player_json))
    results["machine"]["load_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results["markdown"] = markdown(results)
    if out is not None:
        Path(out).write_text(results["markdown"], encoding="utf-8")
        log(f"wrote {out}")
    return results


# --- markdown ------------------------------------------------------------------------------------------------------
def _met(ok: bool | None) -> str:
    return "—" if ok is None else "yes" if ok else "**no**"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _s(x: float) -> str:
    """Seconds with three significant figures."""
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _x(x: float) -> str:
    return f"{x:.1f}×" if x >= 10 else f"{x:.2f}×"


def _params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def markdown(r: dict) -> str:
    s = r["settings"]
    m = r["machine"]
    gen = r.get("generation")
    teacher = gen["teacher_steps"] if gen else None
    st = r.get("student_steps")
    reps, slow = s["reps"], s["slow_reps"]
    L = ["# Benchmarks", "",
         f"Written by `python -m bench.bench{' --quick' if s['quick'] else ''}` (`make bench`). Each figure is the "
         f"median of {reps} repetitions ({slow} for the slow ones: baseline, render, app, long clip) after "
         f"{s['warmup']} warm-up run(s); candidates that are compared run interleaved, and every speed-up is a "
         f"ratio of two figures from this same run. A **no** under *met?* is followed by a note that says what "
         f"limits the figure, from the measurements above it.", ""]
    if s["quick"]:
        L += ["> **Quick mode**: a short clip and few repetitions — a smoke run, not the figures to quote.", ""]
    L += ["## Machine", ""]
    L += _table(["", ""], [
        ["CPU", m["cpu"]], ["cores", f"{m['logical_cores']} logical, {m['usable_cores']} usable by this process"],
        ["torch threads", m["torch_threads"]], ["torch", m["torch"]], ["python", m["python"]],
        ["date", m["date"]], ["git commit", m["commit"]],
        ["load average (1 min) at start / end", f"{m['load_start']:.2f} / {m.get('load_end', float('nan')):.2f}"],
        ["checkpoint", f"`{r['checkpoint']}`" + (f" — rungs {', '.join(map(str, gen['shipped']))} (teacher "
                                                  f"{teacher})" if gen else "")],
        ["clip", f"{r['clip']['seconds']:g} s of {r['clip']['source']}"],
    ])
    L += [""]
    if m["load_start"] >= 1.0:
        L += [f"> **The machine was busy**: the 1-minute load average was {m['load_start']:.1f} on "
              f"{m['usable_cores']} cores when the run started, so absolute times are slower than on an idle "
              f"machine (ratios from interleaved runs suffer less). Rerun on an idle machine to quote them.", ""]
    if gen:
        L += _generation_md(gen, st)
    for key, fn in (("baseline", _baseline_md), ("rtf", _rtf_md), ("diversity", _diversity_md),
                    ("render", _render_md), ("app", _app_md), ("memory", _memory_md), ("gru", _gru_md)):
        if key in r:
            L += fn(r)
    L += _player_md(r.get("player"), "player" in s["sections"])
    return "\n".join(L).rstrip() + "\n"


def _generation_md(gen: dict, st: int) -> list[str]:
    teacher = gen["teacher_steps"]
    L = [f"## 1. End-to-end generation: teacher-{teacher} vs the distilled ladder", "",
         "One `Pipeline` call per row (decode the wav, encode the audio once, match the identity, sample, "
         "denormalise); one sample, identity `auto`, seed 0. Rows marked *teacher network, plain DDIM* are rungs "
         "this checkpoint does not ship: the teacher network sampled with plain DDIM at that step count — the same "
         "network and cost per step as a distilled student of that size, so the time is what such a student "
         "would take (its quality would not match a distilled student's).", ""]
    rows = []
    row_st = None
    for row in gen["rows"]:
        is_goal = row["steps"] == st
        row_st = row if is_goal else row_st
        goal = f"≥ {GOAL_SPEEDUP:g}×" if is_goal else "—"
        met = _met(row["speedup"] >= GOAL_SPEEDUP) if is_goal else "—"
        name = "teacher" if row["steps"] == teacher else f"{row['steps']}-step"
        rows.append([name, row["steps"], row["source"], _s(row["time"]), _s(row["encode"]), _s(row["sample"]),
                     _x(row["speedup"]), _x(row["sample_speedup"]), goal, met])
    L += _table(["model", "steps", "network", "time (s)", "encode (s)", "sampling (s)",
                 f"speed-up vs teacher-{teacher}", "sampling speed-up", "goal", "met?"], rows)
    L += [""]
    if row_st and row_st["speedup"] < GOAL_SPEEDUP:
        fixed = row_st["time"] - row_st["sample"]
        L += [f"*Note:* the {st}-step model spends {_s(row_st['sample'])} s sampling and {_s(fixed)} s "
              f"({_pct(fixed / row_st['time'])} of its time) on per-clip work that distillation does not shrink "
              f"(decode {_s(row_st['load'])} s, encode {_s(row_st['encode'])} s, identity match "
              f"{_s(row_st['match'])} s). Its denoising loop alone is {_x(row_st['sample_speedup'])} faster than the "
              f"teacher's ({teacher}/{st} = {teacher / st:g}× fewer network calls); that fixed per-clip cost brings "
              f"the end-to-end ratio down to {_x(row_st['speedup'])}.", ""]
    return L


def _baseline_md(r: dict) -> list[str]:
    b = r["baseline"]
    gen = r["generation"]
    teacher, st = gen["teacher_steps"], r["student_steps"]
    t_teacher = gen["rows"][0]["time"]
    t_st = generation_row(gen, st)["time"]
    L = [f"## 2. FaceDiffuser-style baseline: re-encode every step, {b['steps']}-step ancestral DDPM", "",
         f"The teacher network sampled with ancestral DDPM on the {b['steps']}-step grid "
         f"(`NoiseSchedule.grid({b['steps']})`: {b['grid_len']} steps, t = {b['grid_ends'][0]} … "
         f"{b['grid_ends'][1]}), with the audio encoder re-run before every step "
         f"(`diffusion.sample(..., reencode=...)`; {b['encoder_calls_per_run']} encoder calls per run) as "
         f"FaceDiffuser does, and with the features computed once. Outputs finite: {'yes' if b['finite'] else 'NO'}."
         f" Ratios are against the {st}-step model of section 1. No extra warm-up: the network and encoder are "
         f"warm from section 1.", ""]
    rows = [[f"re-encode every step + DDPM-{b['steps']} (FaceDiffuser-style)", b["steps"], _s(b["reencode"]),
             _x(b["reencode"] / t_st), "—", "—"],
            [f"encode once + DDPM-{b['steps']}", b["steps"], _s(b["once"]), _x(b["once"] / t_st), "—", "—"],
            [f"encode once + DDIM teacher-{teacher} (section 1)", teacher, _s(t_teacher), _x(t_teacher / t_st),
             "—", "—"],
            [f"encode once + {st}-step model (section 1)", st, _s(t_st), "1×", "—", "—"]]
    rtf = r.get("rtf")
    if rtf:
        h = rtf["rows"]["hubert"]
        est = b["once"] + b["steps"] * h["encode"]
        rows.append([f"re-encode HuBERT-base every step + DDPM-{b['steps']} (*estimate*: encode-once DDPM time + "
                     f"{b['steps']} × the HuBERT encode time of section 3)", b["steps"], _s(est), _x(est / t_st), "—",
                     "—"])
    L += _table(["method", "steps", "time (s)", f"× the {st}-step model", "goal", "met?"], rows)
    L += ["", f"Encoding once saves {_x(b['reencode'] / b['once'])} at {b['steps']} steps; DDIM-{teacher} instead of "
          f"DDPM-{b['steps']} saves {_x(b['once'] / t_teacher)}; distillation to {st} steps another "
          f"{_x(t_teacher / t_st)}. No goal is set for this row set; it shows where the speed comes from.", ""]
    return L


def _rtf_md(r: dict) -> list[str]:
    x = r["rtf"]
    sec = r["clip"]["seconds"]
    L = [f"## 3. Real-time factor and the audio encoder's share ({x['steps']} steps)", "",
         f"Generation seconds per audio second on the {sec:g} s clip: decode, encode, identity match and "
         f"{x['steps']}-step DDIM with the same denoiser; only the encoder differs. HuBERT-base is built from "
         f"`transformers.HubertConfig()` with random weights (no download): its cost is what a trained one costs.",
         ""]
    rows = []
    for k, label in (("mel", "mel (embedded)"), ("hubert", "HuBERT-base (random init)")):
        row = x["rows"][k]
        goal = f"≤ {GOAL_RTF:g}" if k == "mel" else "—"
        rows.append([label, _params(row["encoder_params"]), _s(row["encode"]), _s(row["sample"]), _s(row["time"]),
                     f"{row['rtf']:.4f}", _pct(row["encoder_share"]), goal,
                     _met(row["rtf"] <= GOAL_RTF) if k == "mel" else "—"])
    L += _table(["encoder", "encoder params", "encode (s)", "sampling (s)", "total (s)", "RTF", "encoder share",
                 "goal", "met?"], rows)
    L += [""]
    mel = x["rows"]["mel"]
    if mel["rtf"] > GOAL_RTF:
        L += [f"*Note:* sampling is {_pct(mel['sample'] / mel['time'])} of the time ({x['steps']} denoiser calls of "
              f"{1000 * mel['sample'] / x['steps']:.1f} ms each); decode {_pct(mel['load'] / mel['time'])}, encode "
              f"{_pct(mel['encode'] / mel['time'])}, identity match {_pct(mel['match'] / mel['time'])}. The goal "
              f"allows {_s(GOAL_RTF * sec)} s for {sec:g} s of audio.", ""]
    return L


def _diversity_md(r: dict) -> list[str]:
    d = r["diversity"]
    n = d["n"]
    L = [f"## 4. Diversity: {n} samples in one batch vs 1 sample ({d['steps']} steps)", "",
         f"`Pipeline(..., num_samples={n})` draws the samples as one batch; the audio is encoded once for all.", ""]
    rows = [[1, _s(d[1]["time"]), _s(d[1]["sample"]), "1×", "—", "—"],
            [n, _s(d[n]["time"]), _s(d[n]["sample"]), _x(d["ratio"]), f"≤ {GOAL_DIVERSITY:g}×",
             _met(d["ratio"] <= GOAL_DIVERSITY)]]
    L += _table(["samples", "time (s)", "sampling (s)", "× one sample", "goal", "met?"], rows)
    L += [""]
    if d["ratio"] > GOAL_DIVERSITY:
        note = (f"*Note:* the sampling stage grows {_x(d['sample_ratio'])} with the batch "
                f"({_s(d[1]['sample'])} → {_s(d[n]['sample'])} s)")
        g = r.get("gru")
        if g:
            tr = {row["batch"]: row["time"] for row in g["rows"] if row["network"] == "transformer"}
            if n in tr:
                note += (f"; one transformer forward at batch {n} costs {_x(tr[n] / tr[1])} one at batch 1 "
                         f"(section 8)")
        L += [note + ".", ""]
    return L


def _render_md(r: dict) -> list[str]:
    x = r["render"]
    L = ["## 5. Render + encode frames per second", "",
         "`render_animation` on the clip's animation: the procedural ARKit-52 head through pyrender offscreen, then "
         "H.264 + AAC via ffmpeg. *Render only* exhausts the frame iterator; *encode only* writes the same frames "
         "again from memory.", ""]
    rows = []
    for row in x["rows"]:
        goal = row["size"] == 512
        label = f"{row['size']}²"
        rows.append([label, row["frames"], _s(row["both"]), f"{row['fps_both']:.1f}", f"{row['fps_render']:.1f}",
                     f"{row['fps_encode']:.1f}", f"≥ {GOAL_RENDER_FPS:g} fps" if goal else "—",
                     _met(row["fps_both"] >= GOAL_RENDER_FPS) if goal else "—"])
    L += _table(["size", "frames", "render + encode (s)", "fps", "render-only fps", "encode-only fps", "goal",
                 "met?"], rows)
    L += [""]
    big = next((row for row in x["rows"] if row["size"] == 512), None)
    if big and big["fps_both"] < GOAL_RENDER_FPS:
        share = big["render"] / (big["render"] + big["encode"])
        L += [f"*Note:* at 512² rendering takes {_s(big['render'])} s and encoding {_s(big['encode'])} s when run "
              f"apart ({_pct(share)} / {_pct(1 - share)} of their sum); rendering alone reaches "
              f"{big['fps_render']:.1f} fps and encoding alone {big['fps_encode']:.1f} fps, so "
              f"{'rendering' if share >= 0.5 else 'encoding'} is the limit.", ""]
    return L


def _app_md(r: dict) -> list[str]:
    a = r["app"]
    sec = r["clip"]["seconds"]
    ok = a["time"] <= GOAL_CLICK_S
    L = [f"## 6. App click-to-video ({sec:g} s clip, {a['steps']} steps)", "",
         f"Measured through {a['method']}: everything from the click to the finished video, plot and downloads, "
         f"without the browser's upload and playback. *Generate* (a `Pipeline` call) and *render* (the "
         f"{a['size']}² main video) are also timed alone, interleaved with the clicks.", ""]
    other = max(a["time"] - a["generate"] - a["render"], 0.0)
    first = a.get("first_update")
    L += _table(["path", "steps", "click-to-video (s)", "first update (s)", "generate (s)", f"render {a['size']}² (s)",
                 "the rest (s)", "goal", "met?"],
                [[a["method"].split(" (")[0], a["steps"], _s(a["time"]), _s(first) if first is not None else "—",
                  _s(a["generate"]), _s(a["render"]), _s(other), f"≤ {GOAL_CLICK_S:g} s", _met(ok)]])
    if first is not None:
        L += ["", "*First update*: the callback streams; its first update (live preview, identity scores, timings) "
              "arrives after this many seconds, the mp4 with the last one."]
    L += [""]
    if not ok:
        parts = (("generation", a["generate"]), (f"rendering the {a['size']}² video", a["render"]),
                 ("the rest (plot, exports, request folder)", other))
        top = max(parts, key=lambda p: p[1])
        L += [f"*Note:* {top[0]} is the largest part: {_pct(top[1] / a['time'])} of the click-to-video time "
              f"(generation {_pct(a['generate'] / a['time'])}, rendering {_pct(a['render'] / a['time'])}, the rest "
              f"{_pct(other / a['time'])}).", ""]
    return L


def _memory_md(r: dict) -> list[str]:
    x = r["memory"]
    L = ["## 7. Peak memory and long audio", "",
         "A fresh child process per clip loads the checkpoint, warms up on 1 s, generates the clip "
         f"({x['short']['steps']} steps; long audio in 20 s windows with 3 s of inpainted, cross-faded overlap) "
         "and reports its peak resident set size: `VmHWM` from `/proc/self/status`, because "
         "`getrusage(RUSAGE_SELF).ru_maxrss` survives `execve` and would report the benchmark parent's peak.", ""]
    rows = []
    for key in ("short", "long"):
        c = x[key]
        rows.append([f"{c['audio_seconds']:g} s ({c['frames']} frames)", f"{c['rss_import']:.0f}",
                     f"{c['rss_loaded']:.0f}", f"{c['rss_peak']:.0f}", _s(c["time"]),
                     f"{c['time'] / c['audio_seconds']:.4f}", "finite" if c["finite"] else "**NOT finite**",
                     f"≤ {GOAL_RSS_MIB:g} MiB (1.5 GiB)", _met(c["rss_peak"] <= GOAL_RSS_MIB)])
    L += _table(["clip", "RSS after imports (MiB)", "after loading (MiB)", "peak (MiB)", "generation (s)", "RTF",
                 "output", "goal", "met?"], rows)
    L += [""]
    worst = max((x["short"], x["long"]), key=lambda c: c["rss_peak"])
    if worst["rss_peak"] > GOAL_RSS_MIB:
        L += [f"*Note:* of the {worst['rss_peak']:.0f} MiB peak, {worst['rss_import']:.0f} MiB are there after "
              f"importing torch and the package, {worst['rss_loaded'] - worst['rss_import']:.0f} MiB come with the "
              f"checkpoint and {worst['rss_peak'] - worst['rss_loaded']:.0f} MiB with generating the clip.", ""]
    return L


def _gru_md(r: dict) -> list[str]:
    g = r["gru"]
    L = [f"## 8. Denoiser: bi-GRU vs band-limited transformer ({g['frames']} frames)", "",
         f"One forward pass of the teacher's denoiser and of a {g['layers']}-layer bidirectional GRU "
         f"(hidden {g['hidden']}, same inputs and conditioning; defined in `bench/bench.py` only) sized to a "
         "similar parameter count. The denoiser's docstring claims the transformer is the faster of the two on "
         "CPU; the goal column checks that claim.", ""]
    rows = []
    for row in g["rows"]:
        tr = row["network"] == "transformer"
        rows.append(["band-limited transformer" if tr else "bi-GRU", _params(row["params"]), row["batch"],
                     f"{1000 * row['time']:.2f}", _x(row["ratio"]),
                     "—" if tr else "slower than the transformer (docstring claim)",
                     "—" if tr else _met(row["ratio"] > 1.0)])
    L += _table(["network", "params", "batch", "forward (ms)", "× transformer", "goal", "met?"], rows)
    L += [""]
    slower = [row for row in g["rows"] if row["network"] == "gru" and row["ratio"] <= 1.0]
    if slower:
        L += [f"*Note:* at batch {', '.join(str(row['batch']) for row in slower)} the bi-GRU is the faster network "
              f"here ({', '.join(_x(1 / row['ratio']) for row in slower)} faster); the claim in `denoiser.py` "
              "does not hold on this machine at this size.", ""]
    return L


def _player_md(p: dict | None, wanted: bool) -> list[str]:
    L = ["## 9. WebGL preview (browser player)", ""]
    if p is None or "error" in (p or {}):
        why = (p or {}).get("error") or ("not measured: `bench/player_fps.json` is absent (the browser player's "
                                        "benchmark writes it)" if wanted else "not run")
        L += [f"{why}.", ""]
        p = {}
    else:
        L += ["From `bench/player_fps.json`, written by `python tests/test_player_browser.py --json "
              "bench/player_fps.json` in headless Chromium with software GL (SwiftShader); \"first preview frame\" is "
              "click → first frame drawn in a Gradio app whose callback only builds the preview snippet (the server "
              "round trip included). It is not re-measured by this run.", ""]

    def val(key: str, unit: str) -> str:
        v = p.get(key)
        return f"{v:.1f} {unit}" if isinstance(v, (int, float)) and math.isfinite(v) else "—"

    fm = p.get("first_frame_ms")
    first_ok = fm <= GOAL_FIRST_FRAME_MS if isinstance(fm, (int, float)) else None
    rows = [["one head at 512², frames per second", val("fps_single", "fps"), "—", "—"],
            ["2×2 grid at 512², frames per second", val("fps_grid", "fps"), "—", "—"],
            ["first preview frame after sampling ends", val("first_frame_ms", "ms"), f"≤ {GOAL_FIRST_FRAME_MS:g} ms",
             _met(first_ok)]]
    for k, v in p.items():
        if k not in ("fps_single", "fps_grid", "first_frame_ms") and isinstance(v, (int, float)):
            rows.append([k, f"{v:.4g}", "—", "—"])
    L += _table(["measure", "value", "goal", "met?"], rows)
    return L + [""]


# --- command line --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="ladder or checkpoint dir")
    parser.add_argument("--quick", action="store_true", help="short clip, few repetitions (a smoke run)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="markdown file to write (default BENCHMARKS.md)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (generation always runs)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # memory child: the wav to generate
    parser.add_argument("--steps", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child_main(args.checkpoint, args.child, args.steps, args.reps)))
        return 0
    sections = tuple(x.strip() for x in args.sections.split(",") if x.strip())
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {list(SECTIONS)}")
    settings = quick_settings(sections=sections) if args.quick else Settings(sections=sections)
    if not Path(args.checkpoint).exists():
        print(f"error: no checkpoint at {args.checkpoint}; run `make default-model` or pass --checkpoint DIR",
              file=sys.stderr)
        return 2
    run(args.checkpoint, settings, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
