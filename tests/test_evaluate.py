"""End-to-end evaluation of a tiny ladder on fabricated clips: metrics.json and the table, finite numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from diffusiontalker.arkit import ARKIT_52, BEAT_51
from diffusiontalker.audio import num_frames
from diffusiontalker.errors import DataError
from tests.conftest import make_ladder, speechlike
from train.evaluate import BASELINE, evaluate, format_table, main


def _blendshape_motion(rng: np.random.Generator, K: int, T: int, names: tuple[str, ...]) -> np.ndarray:
    t = np.arange(T) / 30.0
    m = np.zeros((K, T, len(names)), np.float32)
    for k in range(K):
        m[k, :, names.index("jawOpen")] = 0.3 + 0.25 * np.sin(2 * np.pi * 4 * t + k)
        m[k, :, names.index("mouthClose")] = rng.uniform(0, 0.2, T)
        blink = rng.integers(3, T - 6)
        m[k, blink:blink + 4, names.index("eyeBlinkLeft")] = 1.0
        m[k, blink:blink + 4, names.index("eyeBlinkRight")] = 1.0
    return m


def _write(path: Path, **fields) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: np.asarray(v) for k, v in fields.items()})


def make_blendshape_clips(root: Path) -> Path:
    """test/: 3 clips (ava with 3 takes, ben in BEAT's 51-channel order, cy); train/: 2 clips; meta.json."""
    rng = np.random.default_rng(0)
    (root).mkdir(parents=True, exist_ok=True)
    (root / "meta.json").write_text(json.dumps({"kind": "blendshape", "fps": 30, "sample_rate": 16000}))
    specs = [("test", "ava_0", "ava", 3, ARKIT_52), ("test", "ben_0", "ben", 1, BEAT_51),
             ("test", "cy_0", "cy", 1, ARKIT_52), ("train", "ava_1", "ava", 2, ARKIT_52),
             ("train", "ben_1", "ben", 1, ARKIT_52)]
    for i, (split, name, speaker, K, names) in enumerate(specs):
        audio = speechlike(1.0, f0=110 + 20 * i, seed=i)
        T = num_frames(len(audio))
        motion = _blendshape_motion(rng, K, T, names)
        _write(root / split / f"{name}.npz", audio=audio, motion=motion[0] if K == 1 else motion, kind="blendshape",
               names=np.asarray(names), speaker=speaker, emotion="happy" if name == "cy_0" else "neutral")
    return root


def _all_finite(row: dict, skip: tuple[str, ...] = ()) -> bool:
    return all(math.isfinite(v) for k, v in row.items() if k not in skip)


def test_evaluate_blendshape_ladder_end_to_end(tmp_path):
    ladder = make_ladder(tmp_path / "ladder", steps=(4, 2, 1))  # teacher-4, students 2/1
    data = make_blendshape_clips(tmp_path / "clips")
    out, table = tmp_path / "metrics.json", tmp_path / "table.md"
    rc = main(["--checkpoint", str(ladder), "--data", str(data), "--seeds", "2", "--teacher-ddim", "2", "4",
               "--out", str(out), "--table", str(table), "--quiet"])
    assert rc == 0
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    assert list(rows) == ["teacher-4", "student-2", "student-1", "teacher-DDIM-4", "teacher-DDIM-2", BASELINE]
    for name in ["teacher-4", "student-2", "student-1", "teacher-DDIM-4", "teacher-DDIM-2"]:
        row = rows[name]
        for key in ("lip_error", "mve", "fdd", "diversity_seeds", "diversity_identities", "identity_top1",
                    "identity_top3", "mouth_std_ratio", "jaw_r", "blink_ratio", "spread_ratio", "s_per_s_audio",
                    "speedup"):
            assert row[key] is not None and math.isfinite(row[key]), (name, key, row[key])
        assert row["lip_error"] > 0 and row["diversity_seeds"] > 0 and row["s_per_s_audio"] > 0
        assert 0 <= row["identity_top1"] <= row["identity_top3"] == 1.0  # 3 identities: top-3 always hits
        assert row["identity_clips"] == 3
    assert rows["teacher-4"]["speedup"] == pytest.approx(1.0)
    # per-emotion lip error: two neutral test clips and one happy one
    neutral, happy = rows["teacher-4"]["lip_error_neutral"], rows["teacher-4"]["lip_error_happy"]
    assert rows["teacher-4"]["lip_error"] == pytest.approx((2 * neutral + happy) / 3) and neutral != happy
    # plain DDIM of the teacher at its own step count is the teacher row (same seeds, same network)
    for key in ("lip_error", "mve", "fdd", "diversity_seeds", "jaw_r"):
        assert rows["teacher-DDIM-4"][key] == pytest.approx(rows["teacher-4"][key], rel=1e-5, abs=1e-7)
    base = rows[BASELINE]
    assert base["lip_error"] > 0 and base["diversity_seeds"] == 0 and base["mouth_std_ratio"] == 0
    assert base["s_per_s_audio"] is None and "identity_top1" not in base
    meta = doc["meta"]
    assert meta["clips"] == 3 and meta["seeds"] == 2 and meta["split"] == "test"
    assert meta["baseline"].startswith("mean of") and "date" in meta and "git_commit" in meta
    text = table.read_text()
    for name in rows:
        assert f"| {name} |" in text
    assert "lip error" in text and "id top-3" in text and "speed-up" in text


def test_evaluate_function_with_unknown_speaker_and_vertex_data(tmp_path):
    """Vertex ladder, user index files, a speaker the model does not know (-> 'auto', no identity label)."""
    ladder = make_ladder(tmp_path / "ladder", steps=(4, 1), kind="vertex")  # 10 vertices
    data = tmp_path / "clips"
    (data).mkdir()
    (data / "meta.json").write_text(json.dumps({"kind": "vertex"}))
    rng = np.random.default_rng(0)
    template = rng.standard_normal((10, 3)).astype(np.float32)
    for i, speaker in enumerate(["ava", "zed"]):
        audio = speechlike(1.0, seed=i)
        T = num_frames(len(audio))
        motion = 0.01 * rng.standard_normal((T, 30)).astype(np.float32)
        _write(data / "test" / f"c{i}.npz", audio=audio, motion=motion, kind="vertex", template=template,
               speaker=speaker, emotion="neutral")
    (tmp_path / "lips.txt").write_text("0\n1\n2\n")
    (tmp_path / "upper.txt").write_text("7, 8, 9")
    result = evaluate(ladder, data, seeds=2, lip_idx=tmp_path / "lips.txt", upper_idx=tmp_path / "upper.txt",
                      identity_diversity=False)
    rows = result["rows"]
    assert list(rows) == ["teacher-4", "student-1", BASELINE]  # no train split: baseline from motion_mean
    assert "motion_mean" in result["meta"]["baseline"]
    for name in ("teacher-4", "student-1"):
        row = rows[name]
        assert _all_finite(row, skip=("identity_top1", "identity_top3")), row
        assert row["lve"] > 0 and row["mve"] > 0
        assert row["identity_clips"] == 1  # only "ava" is a known identity
        assert "diversity_identities" not in row
    text = format_table(result)
    assert "LVE" in text and "jaw r" not in text and "| student-1 |" in text


def test_evaluate_errors_are_actionable(tmp_path, capsys):
    ladder = make_ladder(tmp_path / "ladder", steps=(2, 1))
    data = make_blendshape_clips(tmp_path / "clips")
    with pytest.raises(DataError, match="no clips in"):
        evaluate(ladder, data, split="val")
    rc = main(["--checkpoint", str(ladder), "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.json"),
               "--table", str(tmp_path / "t.md"), "--quiet"])
    assert rc == 2
    assert "meta.json" in capsys.readouterr().err
    # max_clips picks across speakers and steps outside the ladder are skipped and recorded
    result = evaluate(ladder, data, seeds=1, max_clips=2, steps=[2, 16], identity_diversity=False, baseline=False)
    assert result["meta"]["clips"] == 2 and result["meta"]["missing_rungs"] == [16]
    assert list(result["rows"]) == ["teacher-2"]


def test_vertex_regions_default_to_the_procedural_head(tmp_path):
    from diffusiontalker.render.rig import load_head
    from train.evaluate import vertex_regions

    head = load_head()
    lips, upper = vertex_regions(head.num_vertices)
    assert np.array_equal(lips, head.regions["lips"]) and np.array_equal(upper, head.regions["upper_face"])
    with pytest.raises(DataError, match="--lip-idx"):
        vertex_regions(10)
    (tmp_path / "lips.txt").write_text("0\n99\n")
    with pytest.raises(DataError, match="mesh has 10 vertices"):
        vertex_regions(10, tmp_path / "lips.txt", tmp_path / "lips.txt")


def test_the_table_goes_next_to_the_metrics_by_default(tmp_path, monkeypatch):
    """Without --table the markdown lands beside --out, never in the working directory."""
    ladder = make_ladder(tmp_path / "ladder", steps=(2, 1))
    data = make_blendshape_clips(tmp_path / "clips")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "run" / "metrics.json"
    assert main(["--checkpoint", str(ladder), "--data", str(data), "--identity-only", "--out", str(out),
                 "--quiet"]) == 0
    assert out.exists() and "| teacher-2 |" in (tmp_path / "run" / "metrics_table.md").read_text()
    assert not list(cwd.iterdir())


def test_other_takes_row_scores_the_data_against_itself(tmp_path):
    """With several takes per clip the table gains the data's own floor: takes 1.. scored against take 0 exactly
    like samples; data with a single take somewhere gets no such row."""
    from diffusiontalker.metrics import lip_error
    from train.evaluate import OTHER_TAKES

    ladder = make_ladder(tmp_path / "ladder", steps=(2, 1))
    rng = np.random.default_rng(1)
    root = tmp_path / "clips"
    (root / "test").mkdir(parents=True)
    (root / "meta.json").write_text(json.dumps({"kind": "blendshape", "fps": 30, "sample_rate": 16000}))
    expected = []
    for i in range(2):
        audio = speechlike(1.0, seed=i)
        motion = _blendshape_motion(rng, 3, num_frames(len(audio)), ARKIT_52)
        _write(root / "test" / f"ava_{i}.npz", audio=audio, motion=motion, kind="blendshape",
               names=np.asarray(ARKIT_52), speaker="ava")
        expected.append(np.mean([lip_error(motion[k], motion[0], ARKIT_52) for k in (1, 2)]))
    rows = evaluate(ladder, root, seeds=2, identity_diversity=False)["rows"]
    assert list(rows)[-2:] == [OTHER_TAKES, BASELINE]
    assert rows[OTHER_TAKES]["lip_error"] == pytest.approx(float(np.mean(expected)), rel=1e-5)
    assert rows[OTHER_TAKES]["lip_error"] < rows[BASELINE]["lip_error"]
    assert "| data (other takes) | — |" in format_table({"rows": rows})
    single = make_blendshape_clips(tmp_path / "mixed")  # ben_0 and cy_0 have one take
    assert OTHER_TAKES not in evaluate(ladder, single, seeds=1, identity_diversity=False)["rows"]
