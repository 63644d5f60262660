"""The model card's quality-bar table: each bar checked against evaluation rows, unmeasured ones said so."""

from __future__ import annotations

import json

from train.export_default import bars_section, quality_bars


def _rows(**student8) -> dict:
    s8 = {"lip_error": 0.10, "jaw_r": 0.95, "mouth_std_ratio": 1.0, "identity_top1": 0.97, "blink_ratio": 0.9,
          "spread_ratio": 2.0} | student8
    return {"teacher-512": {"lip_error": 0.11, "blink_ratio": 0.8},
            "student-8": s8,
            "student-2": {"mouth_std_ratio": 0.85},
            "student-1": {"mouth_std_ratio": 0.5},  # reported, not judged
            "student-8 (true emotion)": {"mouth_std_ratio": 3.0},  # another row of the same rung: not a student
            "teacher-DDIM-8": {"lip_error": 0.01},  # an ablation row is not the teacher
            "baseline (channel mean)": {"lip_error": 0.5}}


def test_every_bar_met():
    bars = quality_bars(_rows(), {"student-8": {"jaw_r": 0.7}}, {"student-8": {"jaw_r": 0.65}})
    assert [met for _, _, met in bars] == [True] * len(bars)
    measured = {bar: value for bar, value, _ in bars}
    assert measured["student-8 lip error <= 1.05 x teacher's"] == "0.909 x"
    assert measured["student-8 lip error <= 0.25 x mean baseline's"] == "0.20 x"
    assert measured["mouth std ratio in [0.8, 1.2], students down to 2 (1 reported)"] == "8: 1.00, 2: 0.85, 1: 0.50"


def test_failed_and_unmeasured_bars():
    bars = {bar: (value, met) for bar, value, met in
            quality_bars(_rows(lip_error=0.2, blink_ratio=0.28, jaw_r=None, identity_top1=0.9))}
    assert bars["student-8 lip error <= 1.05 x teacher's"] == ("1.818 x", False)
    assert bars["student-8 blink rate 0.7-1.3 x the data's"] == ("0.28 x", False)
    assert bars["teacher blink rate 0.7-1.3 x the data's"] == ("0.80 x", True)
    assert bars["identity top-1 >= 95% (held-out sentences)"] == ("90%", False)
    assert bars["student-8 jawOpen r >= 0.9"] == ("—", None)
    assert bars["jawOpen r >= 0.6 on held-out voices (student-8)"] == ("not measured", None)


def test_card_section_reads_the_run(tmp_path):
    assert bars_section(tmp_path) == ""  # nothing evaluated yet: no section
    rows = _rows(lip_error_happy=0.3, lip_error_neutral=0.1)
    (tmp_path / "metrics.json").write_text(json.dumps({"rows": rows}))
    (tmp_path / "metrics_heldout.json").write_text(json.dumps({"rows": {"student-8": {"jaw_r": 0.5}}}))
    text = bars_section(tmp_path)
    assert text.startswith("## Against the project's quality bars")
    assert "| jawOpen r >= 0.6 on held-out voices (student-8) | 0.50 | **no** |" in text
    assert "| jawOpen r >= 0.6 on augmented audio (student-8) | not measured | — |" in text
    assert "happy 0.300, neutral 0.100" in text


def test_card_notes_the_floor_and_the_emotion_head(tmp_path):
    from diffusiontalker.config import override, preset
    from train.evaluate import OTHER_TAKES
    from train.export_default import model_card

    rows = _rows(emotion_acc=0.8, emotion_recall_happy=0.6, emotion_recall_neutral=0.95) | {
        OTHER_TAKES: {"lip_error": 0.11}, "student-8 (true emotion)": {"lip_error": 0.12}}
    (tmp_path / "metrics.json").write_text(json.dumps({"rows": rows}))
    text = bars_section(tmp_path)
    assert "reach lip error 0.110 (0.22 x the baseline)" in text
    assert "true emotion by name, student-8 reaches lip error 0.120 (0.240 x the baseline)" in text
    assert "names 80% of the test clips' emotions from the audio (recall: happy 60%, neutral 95%)." in text
    (tmp_path / "metrics_heldout.json").write_text(json.dumps({"rows": {"student-8": {"emotion_acc": 0.5}}}))
    assert "(recall: happy 60%, neutral 95%); on voices it never heard" in bars_section(tmp_path)
    assert "can only guess, it names 50%. Choosing" in bars_section(tmp_path)
    cfg = override(preset("tiny"), model__emotion_head=True, model__emotion_names=["neutral", "happy"])
    (tmp_path / "data").mkdir()
    card = model_card(cfg, 8, "student-8", tmp_path, tmp_path / "data", 1000, 0.1)
    assert "An emotion head (neutral, happy)" in card and "name the emotion when you know it" in card
    assert "An emotion head" not in model_card(preset("tiny"), 8, "student-8", tmp_path, tmp_path / "data", 1000, 0.1)


def test_card_states_the_prosody_refit_and_a_recorded_budget(tmp_path):
    """A ladder refitted after its run directory is gone: the budget comes from the checkpoint's meta, and the card
    says what the emotion head hears and how it was refitted."""
    from diffusiontalker.config import override, preset
    from train.export_default import model_card

    cfg = override(preset("tiny"), model__emotion_head=True, model__emotion_names=["neutral", "happy"],
                   model__emotion_features="prosody")
    meta = {"training_summary": "100 iterations in 1 min", "distill_summary": "8 steps: 4 iterations",
            "emotion_refit": {"clips": 16, "epochs": 300, "augment_copies": 1, "val_acc_before": 0.5,
                              "val_acc": 0.75}}
    (tmp_path / "data").mkdir()
    card = model_card(cfg, 8, "student-8", tmp_path, tmp_path / "data", 1000, 0.1, meta)
    assert "100 iterations in 1 min. Distillation: 8 steps: 4 iterations." in card
    assert "refitted on prosody" in card and "16 whole training clips (1 augmented copy of each)" in card
    assert "validation accuracy 50% -> 75%" in card
    assert "reads the emotion from the clip's prosody (log-f0 percentiles" in card
    plain = model_card(preset("tiny"), 8, "student-8", tmp_path, tmp_path / "data", 1000, 0.1)
    assert "not recorded. Distillation: not recorded." in plain and "refitted" not in plain
