"""The inference pipeline, in the order of the paper's inference figure:
load audio -> encode it ONCE -> match (or choose) the identity -> sample N motions in one batch -> Animations.

    pipe = Pipeline.from_pretrained("checkpoints/default")
    animations = pipe("speech.wav", steps=8, identity="auto", num_samples=3, seed=0)

Long audio is generated in overlapping windows: each window after the first is conditioned on the previous
window's result over the overlap (diffusion inpainting) and the two are cross-faded there, so memory stays bounded
and no seam shows.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from diffusiontalker.animation import Animation
from diffusiontalker.audio import FPS, load_audio, num_frames
from diffusiontalker.checkpoint import load_checkpoint, read_config, read_ladder
from diffusiontalker.config import Config
from diffusiontalker.diffusion import sample
from diffusiontalker.errors import DiffusionTalkerError, IdentityError
from diffusiontalker.model import TalkerModel
from diffusiontalker.schedule import NoiseSchedule

IdentitySpec = str | dict[str, float] | None
EmotionSpec = str | dict[str, float] | None
Progress = Callable[[float, str], None]

WINDOW_SECONDS = 20.0
OVERLAP_SECONDS = 3.0


class Pipeline:
    """Speech -> face motion with one checkpoint or a distillation ladder of them."""

    def __init__(self, rungs: dict[int, Path], device: str | torch.device = "cpu",
                 window_seconds: float = WINDOW_SECONDS, overlap_seconds: float = OVERLAP_SECONDS):
        if not rungs:
            raise DiffusionTalkerError("a pipeline needs at least one checkpoint")
        self.rungs = dict(sorted(rungs.items()))
        self.device = torch.device(device)
        self._models: dict[int, tuple[TalkerModel, Config]] = {}
        self._schedules: dict[int, NoiseSchedule] = {}
        self._load_lock = threading.Lock()
        self.window_frames = int(round(window_seconds * FPS))
        self.overlap_frames = int(round(overlap_seconds * FPS))
        if not 0 < self.overlap_frames < self.window_frames // 2:
            raise DiffusionTalkerError("overlap_seconds must be positive and under half of window_seconds")
        # the config of the default rung describes the pipeline (kind, identities, channel names)
        self.config, _ = read_config(self.rungs[self.default_steps])

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu", **kwargs) -> Pipeline:
        """Load a checkpoint dir (``config.json``) or a ladder dir (``ladder.json`` listing several rungs)."""
        return cls(read_ladder(path), device=device, **kwargs)

    # --- what the checkpoint offers -------------------------------------------------------------------------
    @property
    def available_steps(self) -> list[int]:
        return sorted(self.rungs)

    @property
    def teacher_steps(self) -> int:
        return max(self.rungs)

    @property
    def default_steps(self) -> int:
        return 8 if 8 in self.rungs else max(self.rungs)

    @property
    def kind(self) -> str:
        return self.config.model.kind

    @property
    def identity_names(self) -> list[str]:
        return list(self.config.model.identity_names)

    def model(self, steps: int | None = None) -> TalkerModel:
        """The network of the rung sampling with ``steps`` steps (loaded once, then cached)."""
        steps = self._check_steps(steps)
        with self._load_lock:  # app users arrive on several threads: load each rung once, publish it whole
            if steps not in self._models:
                model, cfg, _ = load_checkpoint(self.rungs[steps], self.device)
                if (cfg.model.identity_names != self.identity_names or cfg.model.kind != self.kind
                        or (cfg.model.emotion_names if cfg.model.has_emotion else []) != self.emotion_names):
                    raise DiffusionTalkerError(f"rung {steps} of the ladder has other identities, emotions or output "
                                               f"kind than its default rung")
                # the schedule first: a reader that finds the model must find its schedule too
                self._schedules[steps] = NoiseSchedule(cfg.diffusion.num_train_timesteps)
                self._models[steps] = (model, cfg)
        return self._models[steps][0]

    def _check_steps(self, steps: int | None) -> int:
        if steps is None:
            return self.default_steps
        if int(steps) not in self.rungs:
            raise DiffusionTalkerError(
                f"this checkpoint was not trained for {steps} steps; choose one of {self.available_steps}")
        return int(steps)

    # --- the stages -----------------------------------------------------------------------------------------
    def load(self, audio: str | os.PathLike | np.ndarray, sr: int | None = None,
             max_seconds: float | None = None) -> np.ndarray:
        return load_audio(audio, sr=sr, max_seconds=max_seconds)

    @torch.no_grad()
    def encode(self, wav: np.ndarray, steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) 16 kHz audio -> features (1, T, C) and mask (1, T) of the given rung's encoder."""
        model = self.model(steps)
        audio = torch.from_numpy(wav).to(self.device)[None]
        T = num_frames(len(wav))
        return model.encode(audio, torch.tensor([len(wav)]), torch.tensor([T]))

    @torch.no_grad()
    def match_identity(self, feats: torch.Tensor, mask: torch.Tensor, steps: int | None = None) -> dict[str, float]:
        """Probability of each learned identity given the audio features."""
        probs = self.model(steps).identity.match(feats, mask)[0]
        return {n: float(p) for n, p in zip(self.identity_names, probs)}

    def identity_vector(self, identity: IdentitySpec, scores: dict[str, float], steps: int | None = None
                        ) -> tuple[torch.Tensor, str]:
        """Resolve 'auto' / a name / a {name: weight} mix / None to a conditioning vector (E,) and a label."""
        lib = self.model(steps).identity
        if identity is None or identity == "none":
            return lib.embed(torch.tensor([-1]))[0], "none"
        if isinstance(identity, dict):
            label = " + ".join(f"{w:g}×{n}" for n, w in identity.items())
            return lib.mix(identity), f"mix: {label}"
        if not isinstance(identity, str):
            raise IdentityError("identity must be 'auto', a name, a {name: weight} mix, or None")
        if identity == "auto":
            best = max(scores, key=scores.get)
            return lib.embed(torch.tensor([lib.index(best)]))[0], f"auto:{best}"
        return lib.embed(torch.tensor([lib.index(identity)]))[0], identity

    @property
    def emotion_names(self) -> list[str]:
        """The emotions this model can be conditioned on (empty for models without an emotion head)."""
        return list(self.config.model.emotion_names) if self.config.model.has_emotion else []

    @torch.no_grad()
    def read_emotion(self, feats: torch.Tensor, mask: torch.Tensor, steps: int | None = None,
                     scores: dict[str, float] | None = None, wav: np.ndarray | None = None) -> dict[str, float]:
        """The emotion head's probability of each emotion given the audio features ({} without a head). The head
        hears the emotion against the voice's speaker: the identity matched from the audio (``scores``, computed
        when not given), whatever identity the animation is then given. Heads on prosody also need the clip's
        waveform ``wav`` (16 kHz, as :meth:`load` returns it)."""
        model = self.model(steps)
        if model.denoiser.emotion_head is None:
            return {}
        if wav is None and model.denoiser.emotion_features == "prosody":
            raise DiffusionTalkerError("this model's emotion head hears the clip's prosody: pass wav= as well")
        if scores is None:
            scores = self.match_identity(feats, mask, steps)
        voice, _ = self.identity_vector("auto", scores, steps)
        audio = None if wav is None else torch.as_tensor(np.asarray(wav, np.float32))[None]
        probs = model.read_emotion(audio, None, feats, mask, voice[None])[0]
        return {n: float(p) for n, p in zip(self.emotion_names, probs)}

    def emotion_vector(self, emotion: EmotionSpec, scores: dict[str, float]) -> tuple[torch.Tensor | None, str | None]:
        """Resolve 'auto' / a name / a {name: weight} mix to emotion weights (K,) and a label; (None, None) for a
        model without an emotion head (which accepts only 'auto' or None)."""
        names = self.emotion_names
        if emotion is None:
            emotion = "auto"
        if not names:
            if emotion != "auto":
                raise DiffusionTalkerError("this model has no emotion head (its training data had no emotion labels); "
                                           "leave emotion at 'auto'")
            return None, None
        if isinstance(emotion, dict):
            unknown = [n for n in emotion if n not in names]
            if unknown:
                raise DiffusionTalkerError(f"unknown emotion {unknown}; this model knows {names}")
            try:
                w = torch.tensor([float(emotion.get(n, 0.0)) for n in names])
            except (TypeError, ValueError):
                raise DiffusionTalkerError(f"emotion mix weights must be numbers, got {emotion}") from None
            if not torch.isfinite(w).all() or torch.any(w < 0) or float(w.sum()) <= 0:
                raise DiffusionTalkerError("emotion mix weights must be >= 0 and not all zero")
            label = " + ".join(f"{v:g}×{n}" for n, v in emotion.items())
            return w / w.sum(), f"mix: {label}"
        if not isinstance(emotion, str):
            raise DiffusionTalkerError("emotion must be 'auto', an emotion name or a {name: weight} mix")
        if emotion == "auto":
            best = max(scores, key=scores.get)
            return torch.tensor([scores[n] for n in names]), f"auto:{best}"
        if emotion not in names:
            raise DiffusionTalkerError(f"unknown emotion {emotion!r}; choose 'auto' or one of {names}")
        return torch.nn.functional.one_hot(torch.tensor(names.index(emotion)), len(names)).float(), emotion

    # --- the call -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, audio: str | os.PathLike | np.ndarray, steps: int | None = None,
                 identity: IdentitySpec = "auto", num_samples: int = 1, seed: int = 0,
                 progress: Progress | None = None, sr: int | None = None, max_seconds: float | None = None,
                 emotion: EmotionSpec = "auto") -> list[Animation]:
        """Generate ``num_samples`` animations for one clip (sample i uses seed ``seed + i``).

        Args:
            audio: a file path, or an array of samples with ``sr``.
            steps: DDIM steps, one of :attr:`available_steps` (default 8 when the ladder has it).
            identity: "auto" (matched from the audio), an identity name, a {name: weight} mix, or None.
            num_samples: diversity samples, drawn as one batch.
            seed: base seed; same inputs and seed give the same output.
            progress: optional callback(fraction in [0, 1], description).
            emotion: models with an emotion head: "auto" (read from the whole clip's audio), an emotion name, or a
                {name: weight} mix. Models without one accept only "auto".
        """
        steps = self._check_steps(steps)
        if not 1 <= int(num_samples) <= 64:
            raise DiffusionTalkerError(f"num_samples must be between 1 and 64, got {num_samples}")
        report = progress or (lambda f, d: None)
        timings: dict[str, float] = {}
        tic = time.perf_counter()
        wav = self.load(audio, sr=sr, max_seconds=max_seconds)
        timings["load"] = time.perf_counter() - tic

        model = self.model(steps)
        report(0.0, "encoding audio")
        tic = time.perf_counter()
        feats, mask = self.encode(wav, steps)  # once per clip, reused by every denoising step
        timings["encode"] = time.perf_counter() - tic

        tic = time.perf_counter()
        scores = self.match_identity(feats, mask, steps)
        id_vec, id_label = self.identity_vector(identity, scores, steps)
        emo_scores = self.read_emotion(feats, mask, steps, scores, wav)
        emo_vec, emo_label = self.emotion_vector(emotion, emo_scores)
        timings["match"] = time.perf_counter() - tic

        tic = time.perf_counter()
        x = self._sample_windows(model, self._schedules[steps], feats, id_vec, steps, int(num_samples), int(seed),
                                 report, emo_vec)  # (N, T, D) normalised
        motion = model.denormalise(x).cpu().numpy()
        timings["sample"] = time.perf_counter() - tic
        timings["total"] = sum(timings.values())

        label = "teacher" if steps == self.teacher_steps and len(self.rungs) > 1 else f"student-{steps}"
        if len(self.rungs) == 1:
            label = f"{steps}-step"
        out = []
        for i in range(int(num_samples)):
            common = dict(fps=FPS, audio=wav, seed=int(seed) + i, steps=steps, identity=id_label,
                          identity_scores=scores, timings=dict(timings), model=label, emotion=emo_label,
                          emotion_scores=emo_scores)
            if self.kind == "blendshape":
                out.append(Animation(np.clip(motion[i], 0.0, 1.0), kind="blendshape",
                                     names=tuple(self.config.model.channel_names), **common))
            else:
                template = model.template.cpu().numpy()
                faces = model.faces.cpu().numpy() if model.faces.numel() else None
                verts = motion[i].reshape(motion.shape[1], -1, 3) + template[None]
                out.append(Animation(verts, kind="vertex", template=template, faces=faces, **common))
        report(1.0, "done")
        return out

    def _sample_windows(self, model: TalkerModel, schedule: NoiseSchedule, feats: torch.Tensor,
                        id_vec: torch.Tensor, steps: int, n: int, seed: int, report: Progress,
                        emo_vec: torch.Tensor | None = None) -> torch.Tensor:
        """Sample the whole clip, in overlapping windows when it is longer than one window (every window with the
        clip's identity and emotion)."""
        T, D = feats.shape[1], model.cfg.motion_dim
        # each sample's starting noise comes from its own generator, so sample i with seed s == sample 0 with s + i
        noise = torch.stack([torch.randn(T, D, generator=torch.Generator().manual_seed(seed + i)) for i in range(n)])
        gen = torch.Generator().manual_seed(seed)
        identity = id_vec[None].expand(n, -1)
        emotion = emo_vec[None].expand(n, -1).to(feats.device) if emo_vec is not None else None
        W, O = self.window_frames, self.overlap_frames
        starts = [0] if T <= W else list(range(0, T - O, W - O))
        out = torch.zeros(n, T, D)
        for k, s in enumerate(starts):
            e = min(s + W, T)
            if k > 0 and e - s < W and T >= W:  # last window: align its end to the clip end, keep a full window
                s = max(0, T - W)
            f = feats[:, s:e].expand(n, -1, -1)
            mask = torch.ones(n, e - s, dtype=torch.bool)
            known = known_mask = None
            prev_end = min(starts[k - 1] + W, T) if k > 0 else s
            overlap = max(0, prev_end - s)
            if k > 0 and overlap:
                known = torch.zeros(n, e - s, D)
                known[:, :overlap] = out[:, s:prev_end]
                known_mask = torch.zeros(n, e - s, dtype=torch.bool)
                known_mask[:, :overlap] = True

            def window_progress(i: int, total: int, k: int = k) -> None:
                report((k + i / total) / len(starts), f"denoising ({steps} steps)")

            x = sample(model, schedule, f, mask, identity, steps, noise[:, s:e], generator=gen, known=known,
                       known_mask=known_mask, progress=window_progress, emotion=emotion)
            if overlap:
                w = torch.linspace(0, 1, overlap + 2)[1:-1].view(1, -1, 1)  # linear cross-fade over the overlap
                x[:, :overlap] = (1 - w) * out[:, s:prev_end] + w * x[:, :overlap]
            out[:, s:e] = x
            if e >= T:
                break
        return out
