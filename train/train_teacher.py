"""Train the teacher: x0 reconstruction + velocity term + λ·InfoNCE identity loss, AdamW with warm-up + cosine LR,
gradient clipping, EMA weights (saved), JSONL log, periodic resumable state, Ctrl-C saves.

    python -m train.train_teacher --data data/synth --preset cpu --out runs/default
    python -m train.train_teacher --data data/synth --preset cpu --out runs/default --resume
    torchrun --nproc_per_node=4 -m train.train_teacher --data data/beat --preset paper --out runs/beat   # several GPUs
    python -m train.train_teacher --data data/synth --out runs/ablations/no_identity --single-identity  # ablation
    python -m train.train_teacher --data data/mine --out runs/mine --init-from checkpoints/default/teacher  # fine-tune

The EMA teacher is written to OUT/teacher/ (a checkpoint dir sampling with ``diffusion.steps`` = 512 steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from diffusiontalker.checkpoint import save_checkpoint
from diffusiontalker.config import Config, override, preset
from diffusiontalker.data.clips import ClipDataset, collate, read_clip
from diffusiontalker.diffusion import sample, training_loss
from diffusiontalker.errors import DiffusionTalkerError
from diffusiontalker.model import TalkerModel
from diffusiontalker.prosody import prosody_features
from diffusiontalker.schedule import NoiseSchedule
from diffusiontalker.training import (
    EMA,
    BatchSampler,
    JsonlLog,
    autocast,
    distributed_setup,
    load_state,
    lr_at,
    make_optimizer,
    parse_overrides,
    save_state,
    to_device,
)

SINGLE_IDENTITY = "everyone"  # the one identity of a --single-identity run


def config_for_data(cfg: Config, data: ClipDataset) -> Config:
    """Fit the model's output, identity and emotion sections to the dataset (kind, channels, speakers, and the
    emotion labels when the model asks for an emotion head)."""
    faces = data_faces(data)
    emotions = list(data.emotions) if cfg.model.emotion_head else []
    return override(cfg, model__kind=data.kind, model__motion_dim=int(data.motion_dim),
                    model__channel_names=list(data.names) if data.names is not None else None,
                    model__identity_names=list(data.speakers), model__emotion_names=emotions,
                    model__num_faces=int(len(faces)) if data.kind == "vertex" and faces is not None else 0)


def data_faces(data: ClipDataset) -> np.ndarray | None:
    """Triangles of the vertex template, when the clip directory ships them (ROOT/faces.npy)."""
    path = data.roots[0] / "faces.npy"
    return np.load(path, allow_pickle=False) if data.kind == "vertex" and path.exists() else None


def pool_speakers(data: ClipDataset, name: str = SINGLE_IDENTITY) -> None:
    """The no-identity ablation: every speaker of ``data`` counts as the one identity ``name``."""
    data.speaker_to_index = {s: 0 for s in data.speakers}
    data.speakers = [name]


def build_model(cfg: Config, data: ClipDataset) -> TalkerModel:
    model = TalkerModel(cfg.model)
    model.set_normalisation(data.mean, data.std)
    if model.denoiser.emotion_features == "prosody":  # the head hears standardised prosody: whole clips' statistics
        files = [data.files[int(i)] for i in np.unique(np.linspace(0, len(data.files) - 1, 256).round())]
        heard = torch.cat([prosody_features(torch.from_numpy(read_clip(f)["audio"])) for f in files])
        model.denoiser.set_prosody_normalisation(heard.mean(0), heard.std(0))
    if cfg.model.kind == "vertex" and data.template is not None:
        with torch.no_grad():
            model.template.copy_(torch.as_tensor(np.asarray(data.template), dtype=torch.float32))
            if cfg.model.num_faces:
                model.faces.copy_(torch.as_tensor(data_faces(data), dtype=torch.int32))
    return model


def resumed_config(cfg: Config, state_json: Path, announce: bool = True) -> Config:
    """The config a resumed run continues with: the network and loss (``model``, ``diffusion``) it was started
    with, as saved in its state, and this command's ``train`` section (so ``--iterations`` can lengthen the
    schedule). A preset that changed since the run began (e.g. a module added) does not break the resume; the
    differences are printed."""
    import json

    saved = json.loads(state_json.read_text()).get("extra", {}).get("config")
    if not saved:  # state written before the config was saved with it
        return cfg
    try:
        old = Config.from_dict(saved)
    except DiffusionTalkerError as e:
        raise DiffusionTalkerError(f"{state_json}: the saved config cannot be read ({e}); start a new run") from None
    if announce:
        now, then = cfg.to_dict(), old.to_dict()
        changed = [f"{sec}.{k}: {then[sec][k]!r} (now {now[sec][k]!r})" for sec in ("model", "diffusion")
                   for k in now[sec] if now[sec][k] != then[sec].get(k)]
        if changed:
            print(f"resuming with the run's own network and loss settings, not today's: {'; '.join(changed)}")
    return dataclasses.replace(cfg, model=old.model, diffusion=old.diffusion)


def warm_start(model: TalkerModel, directory: str | Path) -> list[str]:
    """Copy the weights of the checkpoint ``directory`` into ``model`` wherever name and shape agree (fine-tuning a
    trained teacher, or adding a module such as the emotion head to one). Returns the names of the model's tensors
    the checkpoint did not have (they keep their initialisation); refuses tensors whose shapes disagree."""
    from safetensors.torch import load_file

    from diffusiontalker.checkpoint import read_config
    from diffusiontalker.errors import CheckpointError

    directory = Path(directory)
    read_config(directory)  # a readable checkpoint directory, or a clear error
    weights = directory / "model.safetensors"
    if not weights.exists():
        raise CheckpointError(f"--init-from {directory}: no model.safetensors there")
    state = load_file(str(weights))
    own = model.state_dict()
    clash = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if clash:
        raise CheckpointError(f"--init-from {directory}: tensor shapes differ from this run's model ({clash[:3]}); "
                              f"warm starts need the same network sizes, channels and identities")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items() if k in own}, strict=False)
    return sorted(set(own) - set(state))


def spread(n: int, k: int) -> list[int]:
    """``min(k, n)`` distinct indices evenly spread over 0 .. n - 1, both ends included. Clips are sorted by name,
    speaker first, so validating on the first k would see one or two speakers; spread picks see them all."""
    return sorted({int(i) for i in np.linspace(0, n - 1, min(k, n)).round()})


@torch.no_grad()
def validate(model: TalkerModel, schedule: NoiseSchedule, val: ClipDataset | None, steps: int = 8,
             max_clips: int = 16) -> dict[str, float]:
    """Lip error (blendshapes, mouth channels by name) or mean squared vertex error of 8-step DDIM samples on
    ``max_clips`` val clips spread evenly over the split, averaged over every take of each clip: fixed noise and no
    random take, so two validations of the same weights give the same number. Also the identity matching accuracy
    and, for models with an emotion head, how often it names the clip's emotion."""
    if val is None or len(val) == 0:
        return {}
    from diffusiontalker import metrics

    model.eval()
    errs, accs, emo = [], [], []
    for n, i in enumerate(spread(len(val), max_clips)):
        item = val[i]
        batch = collate([item])
        feats, mask = model.encode(batch["audio"], batch["audio_lengths"], batch["num_frames"])
        accs.append(float(model.identity.match(feats, mask)[0].argmax() == item["speaker"]))
        ident = model.identity.embed(batch["speaker"])
        # as the pipeline does: the head's reading of the clip, for its speaker
        emotion = model.read_emotion(batch["audio"], batch["audio_lengths"], feats, mask, ident)
        if emotion is not None and int(item["emotion"]) >= 0:
            emo.append(float(emotion[0].argmax() == item["emotion"]))
        g = torch.Generator().manual_seed(n)
        x = sample(model, schedule, feats, mask, ident, steps, torch.randn(feats.shape[:2] + (model.cfg.motion_dim,),
                                                                           generator=g), emotion=emotion)
        pred = model.denormalise(x)[0].numpy()
        takes = val.takes(i)  # (K, T, D)
        if model.cfg.kind == "blendshape":
            errs.append(np.mean([metrics.lip_error(np.clip(pred, 0, 1), gt, model.cfg.channel_names) for gt in takes]))
        else:
            errs.append(float(np.mean((pred[None] - takes) ** 2)))
    out = {"val_lip_error": float(np.mean(errs)), "val_identity_acc": float(np.mean(accs))}
    if emo:
        out["val_emotion_acc"] = float(np.mean(emo))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", required=True, help="clip directories (synthetic, BEAT, VOCASET)")
    p.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "paper"])
    p.add_argument("--out", required=True, help="run directory (state, log, teacher checkpoint)")
    p.add_argument("--iterations", type=int, help="override train.iterations")
    p.add_argument("--batch-size", type=int, help="override train.batch_size")
    p.add_argument("--lr", type=float, help="override train.lr")
    p.add_argument("--encoder-path", help="local HuBERT/wav2vec2 directory (paper preset)")
    p.add_argument("--set", nargs="*", default=[], metavar="SECTION__KEY=VALUE", help="any other config override")
    p.add_argument("--single-identity", action="store_true",
                   help=f"ablation: treat every clip as one speaker ({SINGLE_IDENTITY!r}), so no identity is learned")
    p.add_argument("--resume", action="store_true", help="continue from OUT/state")
    p.add_argument("--init-from", metavar="CHECKPOINT_DIR",
                   help="start from a trained teacher's weights (fine-tuning; new modules keep their initialisation); "
                        "the optimiser and step start fresh")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    overrides = parse_overrides(args.set)
    if args.iterations:
        overrides["train__iterations"] = args.iterations
    if args.batch_size:
        overrides["train__batch_size"] = args.batch_size
    if args.lr:
        overrides["train__lr"] = args.lr
    if args.encoder_path:
        overrides["model__encoder_path"] = args.encoder_path
    try:
        cfg = preset(args.preset, **overrides)
        tc = cfg.train
        train = ClipDataset(args.data, split="train", window=(tc.window_min, tc.window_max), augment=tc.augment,
                            seed=tc.seed, cache=True)
        try:
            val = ClipDataset(args.data, split="val", window=None, speakers=train.speakers, cache=True,
                              emotions=train.emotions)
        except DiffusionTalkerError:
            val = None
        if args.single_identity:
            for d in (train, val):
                if d is not None:
                    pool_speakers(d)
        cfg = config_for_data(cfg, train)
    except DiffusionTalkerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    rank, world, device = distributed_setup()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    resuming = args.resume and (out / "state" / "state.json").exists()
    if resuming:
        try:
            cfg = resumed_config(cfg, out / "state" / "state.json", announce=rank == 0)
        except DiffusionTalkerError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    torch.manual_seed(tc.seed)
    model = build_model(cfg, train).to(device)
    if args.init_from and not resuming:
        try:
            fresh = warm_start(model, args.init_from)
        except DiffusionTalkerError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if rank == 0:
            print(f"warm start from {args.init_from}; new tensors: {fresh or 'none'}")
    if cfg.model.encoder != "mel" and cfg.model.encoder_config is None:  # store the backbone config for offline use
        cfg = override(cfg, model__encoder_config=model.encoder.backbone.config.to_dict())
    ema = EMA(model, tc.ema_decay)
    opt = make_optimizer(model, tc.lr, tc.weight_decay)
    schedule = NoiseSchedule(cfg.diffusion.num_train_timesteps)
    step = 0
    if resuming:
        step = load_state(out / "state", model, ema, opt)["step"]
        if rank == 0:
            print(f"resumed from step {step}")
    train_model = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(model)
    sampler = BatchSampler(train, tc.batch_size, tc.seed, rank)
    log = JsonlLog(out / "log.jsonl", enabled=rank == 0)
    gen = torch.Generator(device="cpu").manual_seed(tc.seed * 1000 + rank)

    def save_all(tag: str) -> None:
        if rank != 0:
            return
        save_state(out / "state", model, ema, opt, step, {"config": cfg.to_dict()})
        save_checkpoint(ema.model, cfg, out / "teacher",
                        meta={"data": [str(d) for d in args.data], "iterations": step, "role": "teacher",
                              "licence": "trained on the data named above; see its licence"})
        log.write(event=tag, step=step)

    bar = tqdm(total=tc.iterations, initial=step, disable=rank != 0 or args.quiet, desc="teacher", smoothing=0.05)
    t0 = time.time()
    try:
        while step < tc.iterations:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, tc.lr, tc.warmup, tc.iterations)
            model.train()
            batch = to_device(sampler.batch(step), device)
            with autocast(device):
                losses = training_loss(train_model if world == 1 else train_model.module, schedule, batch,
                                       cfg.diffusion, gen)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            ema.update(model, step)
            step += 1
            bar.update(1)
            if step % tc.log_every == 0 or step == 1:
                rec = {k: float(v.detach()) for k, v in losses.items()}
                bar.set_postfix(loss=f"{rec['loss']:.4f}", id_acc=f"{rec['id_acc']:.2f}")
                log.write(step=step, lr=opt.param_groups[0]["lr"], grad_norm=float(grad_norm),
                          it_per_s=step / max(1e-9, time.time() - t0), **rec)
            if step % tc.eval_every == 0 and rank == 0:
                log.write(step=step, **validate(ema.model, schedule, val))
            if step % tc.save_every == 0:
                save_all("checkpoint")
    except KeyboardInterrupt:
        save_all("interrupted")
        print(f"\ninterrupted: state saved at step {step}; continue with --resume", file=sys.stderr)
        return 130
    save_all("done")
    if rank == 0:
        log.write(step=step, **validate(ema.model, schedule, val))
        print(f"teacher written to {out / 'teacher'} after {step} iterations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
