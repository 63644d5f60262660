"""The paper-style report: REPORT.md and its figures from small fabricated metrics files; the evaluation options
the ablations need (ancestral DDPM rows, augmented audio, identity-only runs, confusion, style match); the
single-identity training option."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_ladder
from tests.test_evaluate import make_blendshape_clips
from train import report
from train.evaluate import BASELINE, evaluate, style_match, style_statistics

NAMES = ["ava", "ben", "cleo"]


def _row(steps: int, lip: float, s_per_s: float | None, speedup: float | None, top1: float | None = 0.9,
         **extra) -> dict:
    row = {"steps": steps, "lip_error": lip, "mve": 2 * lip, "fdd": 0.01 * steps ** 0.1, "diversity_seeds": 0.05,
           "identity_top1": top1, "identity_top3": None if top1 is None else 1.0, "identity_clips": 6,
           "mouth_std_ratio": 0.9, "jitter_ratio": 1.2, "s_per_s_audio": s_per_s, "speedup": speedup,
           "style_smile_err": 0.02, "style_smile_r": 0.8, "style_brow_err": 0.03, "style_brow_r": 0.6}
    row.update(extra)
    return row


def _style(offset: float) -> dict:
    return {n: {"smile": {"generated": 0.1 * i + offset, "gt": 0.1 * i},
                "brow": {"generated": 0.2 + offset, "gt": 0.05 * i}} for i, n in enumerate(NAMES)}


def _meta(command: str, iterations: int = 2500, **extra) -> dict:
    meta = {"checkpoint": "runs/x/teacher", "data": "data/synth", "split": "test", "kind": "blendshape", "clips": 6,
            "seeds": 4, "teacher_steps": 512, "identities": NAMES, "device": "cpu", "torch_threads": 2,
            "git_commit": "0123456789abcdef", "date": "2026-01-01T00:00:00+00:00", "command": command,
            "checkpoints": {"512": {"path": "runs/x/teacher", "iterations": iterations, "role": "teacher"}}}
    meta.update(extra)
    return meta


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def fabricate_runs(root: Path, with_ablations: bool = True) -> Path:
    """runs/default (ladder + DDIM rows + baseline) and, optionally, every ablation and identity run."""
    confusion = {"names": NAMES, "matrix": [[2, 0, 0], [1, 1, 0], [0, 0, 2]]}
    rows = {"teacher-512": _row(512, 0.0512, 0.9, 1.0, diversity_identities=0.04)}
    for i, n in enumerate(report.STUDENT_STEPS):
        rows[f"student-{n}"] = _row(n, 0.0555 + 0.001 * i, 0.02 * n, 0.9 / (0.02 * n))
    for i, n in enumerate(report.STUDENT_STEPS):
        rows[f"teacher-DDIM-{n}"] = _row(n, 0.0601 + 0.01 * i, 0.02 * n, 0.9 / (0.02 * n))
    rows["teacher-DDIM-1"]["lip_error"] = 0.0501  # plain DDIM beats the student at N = 1: must be reported
    emo = {"lip_error_neutral": 0.0401, "lip_error_happy": 0.0702, "emotion_acc": 0.8765}
    rows["teacher-512"].update(emo)
    rows["student-8 (true emotion)"] = _row(8, 0.0456, 0.16, 5.6, lip_error_happy=0.0471)
    rows[report.OTHER_TAKES] = _row(0, 0.0389, None, None, top1=None)
    rows[BASELINE] = _row(0, 0.4321, None, None, top1=None)
    _write(root / "default" / "metrics.json",
           {"rows": rows, "meta": _meta("python -m train.evaluate --checkpoint runs/default/ladder",
                                        diffusion={"identity_weight": 0.03, "identity_dropout": 0.1, "steps": 512},
                                        model={"dropout": 0.0, "d_model": 128}),
            "identity_confusion": {"teacher-512": confusion}, "style": {"teacher-512": _style(0.01)}})
    (root / "default" / "log.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"step": 1, "elapsed_s": 10.0}, {"step": 1000, "elapsed_s": 3600.0},  # then a resume
        {"step": 1001, "elapsed_s": 5.0}, {"step": 2500, "elapsed_s": 1800.0},
        {"event": "done", "step": 2500, "elapsed_s": 1800.0}]) + "\n")
    if not with_ablations:
        return root
    ab = root / "ablations"
    _write(ab / "no_contrastive" / "metrics.json",
           {"rows": {"teacher-512": _row(512, 0.0777, 0.9, 1.0, top1=0.3333)},
            "meta": _meta("python -m train.evaluate --checkpoint runs/ablations/no_contrastive/teacher"),
            "style": {"teacher-512": _style(0.05)}})
    _write(ab / "no_identity" / "metrics.json",
           {"rows": {"teacher-512": _row(512, 0.0888, 0.9, 1.0, top1=None, style_smile_err=0.0999)},
            "meta": _meta("python -m train.evaluate --checkpoint runs/ablations/no_identity/teacher",
                          identities=["everyone"]),
            "style": {"teacher-512": _style(0.1)}})
    _write(ab / "no_velocity" / "metrics.json",
           {"rows": {"teacher-512": _row(512, 0.0533, 0.9, 1.0, jitter_ratio=3.4567, fdd=0.0123,
                                            blink_ratio=0.4321)},
            "meta": _meta("python -m train.evaluate --checkpoint runs/ablations/no_velocity/teacher",
                          iterations=1000)})  # a smaller budget than the main teacher: the report must say so
    # another network than the main teacher's (dropout), and the identity loss it ablates on purpose: only the
    # dropout is named
    _write(ab / "facediffuser_style" / "metrics.json",
           {"rows": {"teacher-512": _row(512, 0.0611, 0.9, 1.0),
                     "teacher-DDPM-1024": _row(1024, 0.0666, 1.8, 0.5)},
            "meta": _meta("python -m train.evaluate --checkpoint runs/ablations/facediffuser_style/teacher",
                          diffusion={"identity_weight": 0.0, "identity_dropout": 0.0, "steps": 512},
                          model={"dropout": 0.1, "d_model": 128})})
    _write(ab / "no_emotion" / "metrics.json",
           {"rows": {"teacher-512": _row(512, 0.0654, 0.9, 1.0, lip_error_neutral=0.0432, lip_error_happy=0.1098)},
            "meta": _meta("python -m train.evaluate --checkpoint runs/ablations/no_emotion/teacher",
                          model={"dropout": 0.0, "d_model": 128, "emotion_head": False})})
    for name, top1 in (("identity-test", 0.9467), ("identity-test-augmented", 0.8133)):
        _write(ab / name / "metrics.json",
               {"rows": {"teacher-512": {"steps": 512, "identity_top1": top1, "identity_top3": 1.0,
                                         "identity_clips": 150}},
                "meta": _meta(f"python -m train.evaluate --identity-only ({name})", clips=150),
                "identity_confusion": {"teacher-512": confusion}})
    return root


def _section(text: str, title: str) -> str:
    start = text.index(title)
    nxt = text.find("\n## ", start + 1)
    return text[start:nxt if nxt > 0 else len(text)]


def test_report_from_fabricated_metrics_has_every_section_number_and_figure(tmp_path):
    runs = fabricate_runs(tmp_path / "runs")
    out = tmp_path / "REPORT.md"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    text = out.read_text()
    for title in ("## Summary", "## 1. Main table", "## 2. Ablation — distillation",
                  "## 3. Ablation — personalisation", "## 4. Ablation — losses", "## 5. Ablation — emotion",
                  "## 6. Identity matching", "## 7. Training on BEAT / VOCASET", "## Sources"):
        assert title in text, title
    assert "not run yet" not in text.lower()
    main = _section(text, "## 1. Main table")
    for name in ("| teacher-512 |", "| student-8 |", "| student-1 |", f"| {BASELINE} |", "FaceDiffuser-style"):
        assert name in main, name
    assert "0.0512" in main and "0.4321" in main and "0.0666" in main  # teacher, baseline, DDPM-1024 lip error
    assert "×0.50" in main  # the FaceDiffuser-style speed-up over its own DDIM-512
    assert "65.5" in main  # the paper's claim, for scale
    dist = _section(text, "## 2. Ablation — distillation")
    assert "0.0601" in dist and "0.0555" in dist and "docs/report_distillation_quality.png" in dist
    pers = _section(text, "## 3. Ablation — personalisation")
    assert "33%" in pers and "0.0888" in pers and "0.0999" in pers and "report_style.png" in pers
    assert "Not like-for-like" in pers and "facediffuser_style: dropout 0.1 (main 0.0)" in pers
    assert "identity_weight" not in pers.split("Not like-for-like")[1].split("\n")[0]  # ablated on purpose
    assert "no_contrastive:" not in pers  # recipe not recorded, same budget: nothing to say
    losses = _section(text, "## 4. Ablation — losses")
    assert "3.4567" in losses and "0.0123" in losses and "0.4321" in losses
    assert "no_velocity: 1000 iterations (main 2500)" in losses
    summary = _section(text, "## Summary")
    velocity = next(line for line in summary.splitlines() if "Velocity loss" in line)
    personal = next(line for line in summary.splitlines() if "Personalisation:" in line)
    assert "not like-for-like" in velocity and "not like-for-like" not in personal
    emotion = _section(text, "## 5. Ablation — emotion")
    for value in ("0.0512", "0.0654", "0.0702", "0.1098", "88%", "0.0456", "0.0389", "0.4321"):
        assert value in emotion, value
    assert "| variant | lip error ↓ | neutral ↓ | happy ↓ |" in emotion and "Not like-for-like" not in emotion
    line = next(line for line in summary.splitlines() if "Emotion head:" in line)
    assert "0.0512 with vs 0.0654 without" in line and "happy 0.0702 vs 0.1098" in line and "0.0456" in line
    ident = _section(text, "## 6. Identity matching")
    assert "95%" in ident and "81%" in ident and "report_identity_confusion.png" in ident
    real = _section(text, "## 7. Training on BEAT / VOCASET")
    assert "--preset paper --encoder-path" in real and "train.distill" in real and "estimates" in real
    assert "2500 iterations took 1.5 h" in real  # 3600 s + 1800 s over two resumed segments of the fabricated log
    summary = _section(text, "## Summary")
    assert "does NOT beat plain DDIM" in summary and "N = 1" in summary  # an unfavourable result, reported
    assert "0123456789" in text  # the commit behind the numbers
    assert "python -m train.evaluate --checkpoint runs/ablations/no_velocity/teacher" in text
    for name in report.FIGURES:
        png = tmp_path / "docs" / name
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
        assert (tmp_path / link).is_file(), link


def test_missing_metrics_say_how_to_run_them_and_stale_figures_go(tmp_path):
    runs = fabricate_runs(tmp_path / "runs", with_ablations=False)
    out = tmp_path / "REPORT.md"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "report_style.png").write_bytes(b"stale")
    (tmp_path / "runs" / "ablations" / "no_velocity").mkdir(parents=True)
    (tmp_path / "runs" / "ablations" / "no_velocity" / "metrics.json").write_text("{not json")
    text, figures = report.build_report(runs, out)
    assert "Not run yet — run `ONLY=facediffuser_style bash train/ablations.sh`" in _section(text, "## 1. Main table")
    assert "ONLY=no_velocity bash train/ablations.sh" in _section(text, "## 4. Ablation — losses")
    assert "ONLY=identity bash train/ablations.sh" in _section(text, "## 6. Identity matching")
    assert "unreadable" in _section(text, "## Sources")
    # the style figure still has the main model's data; the confusion figure falls back to the main evaluation
    assert {p.name for p in figures} == set(report.FIGURES)
    assert (tmp_path / "docs" / "report_style.png").read_bytes()[:4] == b"\x89PNG"

    empty = tmp_path / "empty"
    text, figures = report.build_report(tmp_path / "no-runs", empty / "REPORT.md")
    assert figures == [] and "Not run yet — run `bash train/build_default.sh`" in text
    assert "## 7. Training on BEAT / VOCASET" in text


def test_ablations_script_runs_the_configurations_the_report_describes():
    script = (Path(__file__).resolve().parents[1] / "train" / "ablations.sh").read_text()
    for ab in report.ABLATIONS.values():
        assert f'ablation {ab.name} "{ab.train}"' in script.replace("\\\n    ", ""), ab.name
        assert ab.evaluate in script, ab.name
        # a teacher with an emotion head is refitted on prosody before its evaluation, as the main ladder is
        line = next(x for x in script.replace("\\\n    ", "").splitlines() if x.startswith(f"ablation {ab.name} "))
        assert line.endswith(" refit") == ab.refit == ("fit_emotion_head" in ab.evaluate_command()), ab.name
    assert "--identity-only" in script and "--augment-audio 0" in script
    # the ablation teachers default to the main teacher's budget, so the comparison is like-for-like
    main = (Path(__file__).resolve().parents[1] / "train" / "build_default.sh").read_text()
    budget = re.search(r"^ITERS=\$\{ITERS:-(\d+)\}", main, re.M)
    assert budget and f"ITERS=${{ITERS:-{budget.group(1)}}}" in script


def test_style_match_scores_per_speaker_levels():
    names = ["mouthSmileLeft", "mouthSmileRight", "browInnerUp", "jawOpen"]
    x = np.zeros((2, 10, 4))
    x[..., 0], x[..., 1], x[..., 2] = 0.2, 0.4, 0.1
    assert style_statistics(x, names) == pytest.approx({"smile": 0.3, "brow": 0.1, "jaw": 0.0})
    records = [(s, {"smile": g}, {"smile": t}) for s, g, t in
               [("a", 0.1, 0.1), ("a", 0.3, 0.1), ("b", 0.3, 0.2), ("c", 0.5, 0.4)]]
    scalars, table = style_match(records)
    assert table["a"]["smile"] == pytest.approx({"generated": 0.2, "gt": 0.1})
    assert scalars["style_smile_err"] == pytest.approx((0.1 + 0.1 + 0.1) / 3)
    assert scalars["style_smile_r"] == pytest.approx(1.0)


def test_evaluate_ddpm_rows_augmented_audio_and_identity_only(tmp_path):
    ladder = make_ladder(tmp_path / "ladder", steps=(4, 1))
    data = make_blendshape_clips(tmp_path / "clips")
    result = evaluate(ladder, data, seeds=2, steps=[4], teacher_ddpm=[4], identity_diversity=False)
    rows = result["rows"]
    assert list(rows) == ["teacher-4", "teacher-DDPM-4", BASELINE]
    assert rows["teacher-DDPM-4"]["lip_error"] != pytest.approx(rows["teacher-4"]["lip_error"])  # another sampler
    assert result["meta"]["teacher_ddpm"] == [4] and result["meta"]["checkpoints"]["4"]["path"].endswith("teacher")
    conf = result["identity_confusion"]["teacher-4"]
    assert conf["names"] == ["ava", "ben", "cy"] and sum(map(sum, conf["matrix"])) == 3
    assert set(result["style"]["teacher-4"]) == {"ava", "ben", "cy"}
    assert "style_smile_err" in rows["teacher-4"] and "style_brow_r" in rows[BASELINE]

    noisy = evaluate(ladder, data, identity_only=True, steps=[4], augment_seed=0)
    assert list(noisy["rows"]) == ["teacher-4"] and "lip_error" not in noisy["rows"]["teacher-4"]
    assert noisy["rows"]["teacher-4"]["identity_clips"] == 3 and noisy["meta"]["augment_audio"] == 0
    assert noisy["meta"]["identity_only"] and "teacher-4" in noisy["identity_confusion"]


def test_single_identity_training_learns_one_identity(tmp_path):
    from tests.test_training import fabricate_clips
    from train import train_teacher
    from train.evaluate import read_config

    data = fabricate_clips(tmp_path / "data", {"train": 4, "val": 2})
    run = tmp_path / "run"
    assert train_teacher.main(["--data", str(data), "--preset", "tiny", "--out", str(run), "--iterations", "2",
                               "--single-identity", "--quiet"]) == 0
    cfg, _ = read_config(run / "teacher")
    assert cfg.model.identity_names == [train_teacher.SINGLE_IDENTITY]
