"""Progressive distillation of a teacher into a ladder of students (Salimans & Ho 2022, Algorithm 2).

Each round initialises a student from the current teacher, trains it so one of its DDIM steps matches two of the
teacher's (``diffusiontalker.distill.progressive_distill_loss``), saves it, and makes it the next teacher:
512 -> 256 -> ... -> target (default 8, allowed down to 1). Every rung is saved as OUT/student-N/ with its step
count in config.json, the teacher is copied to OUT/teacher/, and OUT/ladder.json lists them all, so
``Pipeline.from_pretrained(OUT)`` can choose by ``steps``. Rounds already on disk are skipped (resume), and a
round in progress resumes from OUT/state-N.

    python -m train.distill --teacher runs/default/teacher --data data/synth --out runs/default/ladder --target 1
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from diffusiontalker.checkpoint import load_checkpoint, save_checkpoint, write_ladder
from diffusiontalker.config import override
from diffusiontalker.data.clips import ClipDataset
from diffusiontalker.distill import progressive_distill_loss
from diffusiontalker.errors import DiffusionTalkerError
from diffusiontalker.model import TalkerModel
from diffusiontalker.schedule import NoiseSchedule
from diffusiontalker.training import (
    EMA,
    BatchSampler,
    JsonlLog,
    load_state,
    lr_at,
    make_optimizer,
    parse_overrides,
    save_state,
    to_device,
)


def distill_round(teacher: TalkerModel, cfg, data: ClipDataset, student_steps: int, out: Path, log: JsonlLog,
                  quiet: bool = False, device: torch.device | None = None, iterations: int | None = None
                  ) -> TalkerModel:
    """Train one student of ``student_steps`` steps from ``teacher`` (which samples with 2x as many)."""
    dc = cfg.distill
    iterations = iterations or dc.iterations_per_round
    student = copy.deepcopy(teacher).train()
    trainable = {n: p.requires_grad for n, p in TalkerModel(cfg.model).named_parameters()}  # e.g. a frozen CNN
    for n, p in student.named_parameters():
        p.requires_grad_(trainable[n])
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    ema = EMA(student, dc.ema_decay)
    opt = make_optimizer(student, dc.lr, 0.0)
    schedule = NoiseSchedule(cfg.diffusion.num_train_timesteps)
    state_dir = out / f"state-{student_steps}"
    step = 0
    if (state_dir / "state.json").exists():
        step = load_state(state_dir, student, ema, opt)["step"]
    sampler = BatchSampler(data, dc.batch_size, dc.seed + student_steps)
    gen = torch.Generator().manual_seed(dc.seed * 7919 + student_steps)
    bar = tqdm(total=iterations, initial=step, desc=f"student-{student_steps}", disable=quiet)
    try:
        while step < iterations:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, dc.lr, dc.warmup, iterations)
            batch = to_device(sampler.batch(step), device or torch.device("cpu"))
            losses = progressive_distill_loss(student, teacher, schedule, batch, student_steps, cfg.diffusion, gen)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), dc.grad_clip)
            opt.step()
            ema.update(student, step)
            step += 1
            bar.update(1)
            if step % 50 == 0 or step == 1 or step == iterations:
                rec = {k: float(v.detach()) for k, v in losses.items()}
                bar.set_postfix(loss=f"{rec['loss']:.4f}")
                log.write(round=student_steps, step=step, lr=opt.param_groups[0]["lr"], **rec)
            if step % 200 == 0:
                save_state(state_dir, student, ema, opt, step)
    except KeyboardInterrupt:
        save_state(state_dir, student, ema, opt, step)
        raise
    bar.close()
    return ema.model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", required=True, help="teacher checkpoint dir (e.g. runs/default/teacher)")
    p.add_argument("--data", nargs="+", required=True, help="clip directories the teacher was trained on")
    p.add_argument("--out", required=True, help="ladder directory to write")
    p.add_argument("--target", type=int, help="smallest student step count (power of two, default from config)")
    p.add_argument("--iterations-per-round", type=int)
    p.add_argument("--high-rung-iterations", type=int,
                   help="iterations for rounds whose student still takes >= 16 steps (those are close to their "
                        "teacher already, so fewer suffice); default: --iterations-per-round")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--set", nargs="*", default=[], metavar="SECTION__KEY=VALUE")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    try:
        teacher, cfg, meta = load_checkpoint(args.teacher, device)
        overrides = parse_overrides(args.set)
        for flag, key in (("target", "distill__target_steps"),
                          ("iterations_per_round", "distill__iterations_per_round"),
                          ("batch_size", "distill__batch_size"), ("lr", "distill__lr")):
            if getattr(args, flag) is not None:
                overrides[key] = getattr(args, flag)
        overrides["distill__start_steps"] = cfg.diffusion.steps
        cfg = override(cfg, **overrides)
        data = ClipDataset(args.data, split="train", window=(cfg.train.window_min, cfg.train.window_max),
                           augment=cfg.train.augment, seed=cfg.distill.seed, speakers=cfg.model.identity_names,
                           cache=True)
    except DiffusionTalkerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher_dir = out / "teacher"
    if Path(args.teacher).resolve() != teacher_dir.resolve():
        shutil.copytree(args.teacher, teacher_dir, dirs_exist_ok=True)
    rungs = {cfg.diffusion.steps: "teacher"}
    log = JsonlLog(out / "distill_log.jsonl")
    steps = cfg.diffusion.steps // 2
    current = teacher
    try:
        while steps >= cfg.distill.target_steps:
            name = f"student-{steps}"
            if (out / name / "config.json").exists():  # finished in an earlier run
                current, _, _ = load_checkpoint(out / name, device)
            else:
                iters = args.high_rung_iterations if steps >= 16 and args.high_rung_iterations else None
                current = distill_round(current, cfg, data, steps, out, log, args.quiet, device, iters)
                rung_cfg = override(cfg, diffusion__steps=steps)
                save_checkpoint(current, rung_cfg, out / name,
                                meta=meta | {"role": "student", "distilled_from": 2 * steps})
                shutil.rmtree(out / f"state-{steps}", ignore_errors=True)
            rungs[steps] = name
            write_ladder(out, rungs, teacher_steps=cfg.diffusion.steps)
            steps //= 2
    except KeyboardInterrupt:
        print(f"\ninterrupted during the {steps}-step round; rerun the same command to resume", file=sys.stderr)
        return 130
    write_ladder(out, rungs, teacher_steps=cfg.diffusion.steps)
    print(f"ladder written to {out}: {sorted(rungs, reverse=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
