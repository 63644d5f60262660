"""Teacher training, resume, progressive distillation and evaluation, end to end on fabricated clips."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import speechlike

from diffusiontalker.arkit import ARKIT_52
from diffusiontalker.audio import SAMPLE_RATE, num_frames
from diffusiontalker.checkpoint import load_checkpoint, read_ladder
from diffusiontalker.config import preset
from diffusiontalker.data.clips import compute_norm, write_clip, write_meta
from diffusiontalker.training import EMA, lr_at, parse_overrides
from train import distill as distill_script
from train import train_teacher

SPEAKERS = ["ava", "ben"]


def fabricate_clips(root: Path, per_split: dict[str, int] | None = None) -> Path:
    """Clips whose jawOpen follows the audio envelope and whose speaker is visible in pitch and smile."""
    per_split = per_split or {"train": 6, "val": 2, "test": 2}
    rng = np.random.default_rng(0)
    jaw, smile = ARKIT_52.index("jawOpen"), ARKIT_52.index("mouthSmileLeft")
    for split, n in per_split.items():
        for i in range(n):
            spk = SPEAKERS[i % 2]
            audio = speechlike(2.5, f0=120.0 if spk == "ava" else 220.0, seed=i)
            T = num_frames(len(audio))
            t = np.arange(T) / 30.0
            motion = np.zeros((2, T, 52), np.float32)  # K = 2 takes
            motion[:, :, jaw] = 0.5 * np.sin(2 * np.pi * 4.0 * t) ** 2
            motion[:, :, smile] = 0.6 if spk == "ava" else 0.1
            motion[1] += 0.02 * rng.random((T, 52)).astype(np.float32)
            write_clip(root / split / f"{spk}_{split}_{i}.npz", audio=audio, motion=np.clip(motion, 0, 1),
                       kind="blendshape", names=list(ARKIT_52), speaker=spk, emotion="neutral")
    write_meta(root, kind="blendshape", names=list(ARKIT_52), speakers=SPEAKERS, source="test")
    compute_norm(root)
    (root / "stats.json").write_text(json.dumps({"clips": sum(per_split.values()), "hours": 0.01}))
    return root


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return fabricate_clips(tmp_path_factory.mktemp("clips") / "data")


def test_lr_schedule_warms_up_then_decays():
    assert lr_at(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 10, 100) == pytest.approx(1.0)
    assert lr_at(10, 1.0, 10, 100) == pytest.approx(1.0)
    assert lr_at(100, 1.0, 10, 100) == pytest.approx(0.05)
    assert lr_at(55, 1.0, 10, 100) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_ema_tracks_weights():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    before = ema.model.weight.clone()
    ema.update(model, step=1000)
    assert torch.allclose(ema.model.weight, 0.5 * before + 0.5 * model.weight)


def test_parse_overrides_reads_json_values():
    assert parse_overrides(["train__lr=0.001", "model__identity_names=[\"a\"]", "x__y=abc"]) == {
        "train__lr": 0.001, "model__identity_names": ["a"], "x__y": "abc"}


def test_teacher_resume_distill_evaluate_end_to_end(clip_dir, tmp_path):
    run = tmp_path / "run"
    common = ["--data", str(clip_dir), "--preset", "tiny", "--out", str(run), "--quiet",
              "--set", "train__save_every=4", "train__eval_every=4", "train__log_every=2", "diffusion__steps=8"]
    assert train_teacher.main(common + ["--iterations", "4"]) == 0
    state = json.loads((run / "state" / "state.json").read_text())
    assert state["step"] == 4
    # resume continues from the saved step instead of starting over
    assert train_teacher.main(common + ["--iterations", "6", "--resume"]) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log if "loss" in r]
    assert steps == [1, 2, 4, 6]  # logged every 2 steps; steps 1..4 were not trained twice
    assert any("val_lip_error" in r and math.isfinite(r["val_lip_error"]) for r in log)
    teacher, cfg, meta = load_checkpoint(run / "teacher")
    assert cfg.model.identity_names == SPEAKERS and cfg.diffusion.steps == 8 and meta["iterations"] == 6

    ladder = tmp_path / "ladder"
    assert distill_script.main(["--teacher", str(run / "teacher"), "--data", str(clip_dir), "--out", str(ladder),
                                "--target", "2", "--iterations-per-round", "3", "--quiet"]) == 0
    rungs = read_ladder(ladder)
    assert sorted(rungs) == [2, 4, 8]
    for steps, path in rungs.items():
        _, rung_cfg, _ = load_checkpoint(path)
        assert rung_cfg.diffusion.steps == steps

    from train import evaluate

    out = tmp_path / "metrics.json"
    table = tmp_path / "table.md"
    assert evaluate.main(["--checkpoint", str(ladder), "--data", str(clip_dir), "--seeds", "2", "--out", str(out),
                          "--table", str(table)]) == 0
    metrics = json.loads(out.read_text())
    rows = metrics["rows"]
    assert len(rows) >= 4  # teacher, two students, the mean baseline
    for row in rows.values():
        for key, value in row.items():
            if isinstance(value, float):
                assert math.isfinite(value), (key, row)
    assert "|" in table.read_text()


def test_validation_is_deterministic_and_covers_the_split(clip_dir):
    """The same weights validate to the same number (all takes, fixed noise), and the picks span the split."""
    from diffusiontalker.data.clips import ClipDataset
    from diffusiontalker.schedule import NoiseSchedule

    data = ClipDataset(clip_dir, split="train", window=None, cache=True)
    cfg = train_teacher.config_for_data(preset("tiny"), data)
    torch.manual_seed(0)
    model = train_teacher.build_model(cfg, data)
    schedule = NoiseSchedule(cfg.diffusion.num_train_timesteps)
    grad_modes = []
    encode = model.encode
    model.encode = lambda *a: grad_modes.append(torch.is_grad_enabled()) or encode(*a)
    first = train_teacher.validate(model, schedule, data, steps=2, max_clips=3)
    assert grad_modes and not any(grad_modes)  # validation builds no autograd graph
    second = train_teacher.validate(model, schedule, data, steps=2, max_clips=3)
    assert first == second and 0 < first["val_lip_error"] < 10
    assert train_teacher.spread(150, 16)[:2] == [0, 10] and train_teacher.spread(150, 16)[-1] == 149
    assert len(set(train_teacher.spread(150, 16))) == 16
    assert train_teacher.spread(3, 16) == [0, 1, 2] and train_teacher.spread(1, 16) == [0]


def test_distillation_resumes_finished_rounds(clip_dir, tmp_path):
    run = tmp_path / "run"
    assert train_teacher.main(["--data", str(clip_dir), "--preset", "tiny", "--out", str(run), "--quiet",
                               "--iterations", "2", "--set", "diffusion__steps=4"]) == 0
    ladder = tmp_path / "ladder"
    args = ["--teacher", str(run / "teacher"), "--data", str(clip_dir), "--out", str(ladder), "--target", "1",
            "--iterations-per-round", "2", "--quiet"]
    assert distill_script.main(args) == 0
    first = (ladder / "student-2" / "model.safetensors").read_bytes()
    assert distill_script.main(args) == 0  # a rerun skips the rounds already on disk
    assert (ladder / "student-2" / "model.safetensors").read_bytes() == first
    assert sorted(read_ladder(ladder)) == [1, 2, 4]


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert train_teacher.main(["--data", str(tmp_path / "nope"), "--preset", "tiny", "--out",
                               str(tmp_path / "run")]) == 2
    assert "meta.json" in capsys.readouterr().err


def test_audio_sample_rate_constant_matches_clips(clip_dir):
    clip = np.load(next((clip_dir / "train").glob("*.npz")))
    assert num_frames(len(clip["audio"])) == clip["motion"].shape[1]
    assert SAMPLE_RATE == 16000


def test_make_vertex_clips_turns_blendshapes_into_head_offsets(clip_dir, tmp_path):
    from diffusiontalker.data.clips import ClipDataset, read_clip
    from diffusiontalker.render.rig import load_head
    from train import make_vertex_clips

    out = tmp_path / "vertex"
    assert make_vertex_clips.main(["--src", str(clip_dir), "--out", str(out), "--max-clips", "2"]) == 0
    head = load_head()
    data = ClipDataset(out, split="train", window=None)
    assert data.kind == "vertex" and data.motion_dim == 3 * len(head.neutral)
    assert np.load(out / "faces.npy").shape == head.faces.shape
    clip = read_clip(next((out / "train").glob("*.npz")))
    src = read_clip(clip_dir / "train" / next((out / "train").glob("*.npz")).name)
    expected = head.apply(src["motion"][0]) - head.neutral[None]  # take 0, by name (names are ARKit order here)
    np.testing.assert_allclose(clip["motion"].reshape(expected.shape), expected, atol=1e-5)


def test_merge_metrics_puts_teacher_first_and_recomputes_speedups(tmp_path):
    from train.evaluate import BASELINE, merge_metrics

    teacher = tmp_path / "teacher.json"
    teacher.write_text(json.dumps({"rows": {"teacher-512": {"steps": 512, "s_per_s_audio": 2.0}},
                                   "meta": {"clips": 3}}))
    result = {"rows": {"student-8": {"steps": 8, "s_per_s_audio": 0.04}, BASELINE: {"steps": 0}},
              "meta": {"teacher_steps": 512}}
    merged = merge_metrics(result, [teacher])
    assert list(merged["rows"]) == ["teacher-512", "student-8", BASELINE]
    assert merged["rows"]["student-8"]["speedup"] == pytest.approx(50.0)
    assert merged["rows"]["teacher-512"]["speedup"] == pytest.approx(1.0)
    assert "teacher-512" in merged["meta"]["merged_rows"]


def test_identity_summary_without_known_speakers_is_nan_not_a_crash():
    from train.evaluate import _identity_summary

    result, confusion = _identity_summary([], [], ["ava", "ben"])
    assert math.isnan(result["identity_top1"]) and result["identity_clips"] == 0
    assert confusion["matrix"] == [[0, 0], [0, 0]]


def fabricate_emotional_clips(root: Path) -> Path:
    """Two speakers x two emotions: 'happy' clips are pitched up and smile; meta.json declares the labels."""
    jaw, smile = ARKIT_52.index("jawOpen"), ARKIT_52.index("mouthSmileLeft")
    for split, n in {"train": 8, "val": 4, "test": 4}.items():
        for i in range(n):
            spk, emo = SPEAKERS[i % 2], ("neutral", "happy")[(i // 2) % 2]
            audio = speechlike(2.0, f0=(120.0 if spk == "ava" else 200.0) * (1.3 if emo == "happy" else 1.0), seed=i)
            T = num_frames(len(audio))
            motion = np.zeros((T, 52), np.float32)
            motion[:, jaw] = 0.5 * np.sin(2 * np.pi * 4.0 * np.arange(T) / 30.0) ** 2
            motion[:, smile] = 0.7 if emo == "happy" else 0.1
            write_clip(root / split / f"{spk}_{split}_{i}.npz", audio=audio, motion=motion, kind="blendshape",
                       names=list(ARKIT_52), speaker=spk, emotion=emo)
    write_meta(root, kind="blendshape", names=list(ARKIT_52), speakers=SPEAKERS, source="test",
               emotions=["neutral", "happy"])
    compute_norm(root)
    return root


def _no_head_teacher(tmp_path: Path, data: Path) -> Path:
    run = tmp_path / "noemo"
    assert train_teacher.main(["--data", str(data), "--preset", "tiny", "--out", str(run), "--quiet",
                               "--iterations", "1", "--set", "diffusion__steps=4"]) == 0
    return run / "teacher"


def test_emotion_head_trains_distils_and_is_chosen_at_inference(tmp_path, capsys):
    """Labelled data + emotion_head: the labels reach the config, the head's loss and accuracy are logged, the
    students keep the head, and the pipeline reads the emotion from the audio or takes it by name."""
    from diffusiontalker.data.clips import ClipDataset, collate
    from diffusiontalker.errors import DiffusionTalkerError
    from diffusiontalker.pipeline import Pipeline

    data = fabricate_emotional_clips(tmp_path / "data")
    items = ClipDataset(data, split="train", window=None)
    assert items.emotions == ["neutral", "happy"]
    assert collate([items[0], items[1]])["emotion"].tolist() == [0, 1]
    run = tmp_path / "run"
    assert train_teacher.main(["--data", str(data), "--preset", "tiny", "--out", str(run), "--quiet",
                               "--iterations", "4", "--set", "model__emotion_head=true", "diffusion__steps=4",
                               "train__eval_every=4", "train__log_every=2"]) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(0 <= r["emo_acc"] <= 1 and math.isfinite(r["emo"]) for r in log if "loss" in r)
    assert any("val_emotion_acc" in r for r in log)
    _, cfg, _ = load_checkpoint(run / "teacher")
    assert cfg.model.emotion_names == ["neutral", "happy"] and cfg.model.has_emotion

    ladder = tmp_path / "ladder"
    assert distill_script.main(["--teacher", str(run / "teacher"), "--data", str(data), "--out", str(ladder),
                                "--target", "2", "--iterations-per-round", "2", "--quiet"]) == 0
    student, _, _ = load_checkpoint(ladder / "student-2")
    assert student.denoiser.emotion_head is not None

    pipe = Pipeline.from_pretrained(ladder)
    assert pipe.emotion_names == ["neutral", "happy"]
    audio = speechlike(1.5, f0=156.0)
    [auto] = pipe(audio, steps=2, sr=SAMPLE_RATE)
    assert auto.emotion.startswith("auto:") and sum(auto.emotion_scores.values()) == pytest.approx(1.0)
    assert auto.metadata()["emotion_scores"] == auto.emotion_scores
    [happy] = pipe(audio, steps=2, sr=SAMPLE_RATE, emotion="happy")
    [mixed] = pipe(audio, steps=2, sr=SAMPLE_RATE, emotion={"happy": 1.0, "neutral": 1.0})
    assert happy.emotion == "happy" and mixed.emotion.startswith("mix:")
    with pytest.raises(DiffusionTalkerError, match="unknown emotion 'angry'"):
        pipe(audio, steps=2, sr=SAMPLE_RATE, emotion="angry")
    with pytest.raises(DiffusionTalkerError, match="not all zero"):
        pipe(audio, steps=2, sr=SAMPLE_RATE, emotion={"happy": 0.0})
    with pytest.raises(DiffusionTalkerError, match="must be numbers"):
        pipe(audio, steps=2, sr=SAMPLE_RATE, emotion={"happy": "lots"})

    from train.evaluate import evaluate, format_table

    metrics = evaluate(ladder, data, seeds=1, identity_diversity=False, teacher_ddim=[2], true_emotion=[2])
    rows = metrics["rows"]
    assert "student-2 (true emotion)" in rows and rows["student-2 (true emotion)"]["lip_error"] != rows[
        "student-2"]["lip_error"]
    for name in ("teacher-4", "student-2", "teacher-DDIM-2"):
        assert 0 <= rows[name]["emotion_acc"] <= 1 and {"emotion_recall_happy", "emotion_recall_neutral"} <= set(
            rows[name])
    assert "emotion acc" in format_table(metrics)
    with pytest.raises(DiffusionTalkerError, match="--true-emotion needs a model with an emotion head"):
        evaluate(_no_head_teacher(tmp_path, data), data, seeds=1, true_emotion=[4])


def test_init_from_warm_starts_and_adds_new_modules(clip_dir, tmp_path, capsys):
    """--init-from copies a trained teacher's weights; modules it lacks (here the emotion head) keep their
    initialisation and are named; a checkpoint of another shape is refused with a clear error."""
    from diffusiontalker.pipeline import Pipeline

    data = fabricate_emotional_clips(tmp_path / "data")
    base = tmp_path / "base"
    assert train_teacher.main(["--data", str(data), "--preset", "tiny", "--out", str(base), "--quiet",
                               "--iterations", "2"]) == 0
    old, _, _ = load_checkpoint(base / "teacher")
    with pytest.raises(Exception, match="no emotion head"):
        Pipeline.from_pretrained(base / "teacher")(speechlike(1.0), sr=SAMPLE_RATE, emotion="happy")
    capsys.readouterr()
    warm = tmp_path / "warm"
    args = ["--data", str(data), "--preset", "tiny", "--out", str(warm), "--quiet", "--iterations", "1",
            "--init-from", str(base / "teacher"), "--set", "model__emotion_head=true", "train__lr=1e-12",
            "train__warmup=1"]
    assert train_teacher.main(args) == 0
    assert "denoiser.emotion_head.0.weight" in capsys.readouterr().out
    new, _, _ = load_checkpoint(warm / "teacher")
    # an (almost) zero learning rate: the copied weights are the old teacher's
    torch.testing.assert_close(new.denoiser.input.weight, old.denoiser.input.weight, atol=1e-6, rtol=0)
    other = tmp_path / "other"
    assert train_teacher.main(["--data", str(clip_dir), "--preset", "tiny", "--out", str(other), "--quiet",
                               "--iterations", "1", "--init-from", str(base / "teacher"),
                               "--set", "model__d_model=16", "model__n_heads=2"]) == 2
    assert "shapes differ" in capsys.readouterr().err


def test_vertex_clips_keep_the_emotion_labels(tmp_path):
    from diffusiontalker.data.clips import ClipDataset
    from train import make_vertex_clips

    src = fabricate_emotional_clips(tmp_path / "src")
    out = tmp_path / "vertex"
    assert make_vertex_clips.main(["--src", str(src), "--out", str(out), "--max-clips", "8"]) == 0
    data = ClipDataset(out, split="train", window=None)
    assert data.emotions == ["neutral", "happy"]
    assert {int(data[i]["emotion"]) for i in range(len(data))} == {0, 1}


def test_resume_keeps_the_network_the_run_started_with(tmp_path, capsys):
    """A run started before a preset changed (here: the emotion head added) resumes with its own network and loss
    settings, says what differs, and still takes this command's iteration count."""
    data = fabricate_emotional_clips(tmp_path / "data")
    run = tmp_path / "run"
    common = ["--data", str(data), "--preset", "tiny", "--out", str(run), "--quiet"]
    assert train_teacher.main(common + ["--iterations", "2", "--set", "train__save_every=2"]) == 0
    capsys.readouterr()
    assert train_teacher.main(common + ["--iterations", "4", "--resume", "--set", "train__save_every=2",
                                        "model__emotion_head=true"]) == 0
    assert "resuming with the run's own network and loss settings" in capsys.readouterr().out
    _, cfg, meta = load_checkpoint(run / "teacher")
    assert not cfg.model.has_emotion and meta["iterations"] == 4
