"""bench/bench.py in quick mode on a tiny ladder: every section is measured and written, with finite numbers.

No wall-clock assertions: only structure, finiteness and the bookkeeping behind the figures. The tests that share
the quick run (~20-40 s: it imports gradio and starts two child processes) are marked slow.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from conftest import make_ladder

from bench import bench
from diffusiontalker.config import preset
from diffusiontalker.schedule import NoiseSchedule

TITLES = ["## Machine", "## 1. End-to-end generation", "## 2. FaceDiffuser-style baseline", "## 3. Real-time factor",
          "## 4. Diversity", "## 5. Render + encode", "## 6. App click-to-video", "## 7. Peak memory",
          "## 8. Denoiser: bi-GRU", "## 9. WebGL preview"]
# a HuBERT with the base model's structure but tiny widths, so the test stays fast
TINY_HUBERT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
               "conv_dim": [16] * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("bench")
    # rungs 8 and 2 missing: timed as teacher + DDIM; an emotion head on prosody, as the shipped default has
    ladder = make_ladder(tmp / "ladder", steps=(16, 4, 1), emotions=["neutral", "happy"], emotion_features="prosody")
    settings = bench.quick_settings(clip_seconds=1.0, long_seconds=24.0, reps=1, slow_reps=1, warmup=0,
                                    baseline_steps=32, render_sizes=(64,), app_size=64, hubert_config=TINY_HUBERT)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread avoids contention on a shared 2-core machine
    try:
        out = bench.run(ladder, settings, out=tmp / "BENCHMARKS.md", player_json=tmp / "absent.json")
    finally:
        torch.set_num_threads(threads)
    out["written"] = (tmp / "BENCHMARKS.md").read_text(encoding="utf-8")
    return out


def sections(md: str) -> dict[str, str]:
    parts = re.split(r"^(?=## )", md, flags=re.M)
    return {p.splitlines()[0]: p for p in parts if p.startswith("## ")}


def numbers(obj) -> list[float]:
    if isinstance(obj, bool):
        return []
    if isinstance(obj, (int, float)):
        return [float(obj)]
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in numbers(v)]
    if isinstance(obj, (list, tuple)):
        return [x for v in obj for x in numbers(v)]
    return []


@pytest.mark.slow
def test_markdown_has_every_section_with_goal_and_met_columns(results):
    md = results["written"]
    assert md == results["markdown"]
    found = sections(md)
    for title in TITLES:
        heading = next((h for h in found if h.startswith(title)), None)
        assert heading, f"missing section {title}"
        if title != "## Machine":
            assert "| goal | met? |" in found[heading], f"{title} has no goal/met? columns"
    for key in ("CPU", "cores", "torch threads", "torch", "date", "git commit"):
        assert f"| {key} |" in md


@pytest.mark.slow
def test_every_figure_is_finite(results):
    measured = {k: v for k, v in results.items() if k not in ("settings", "markdown", "written", "player")}
    values = numbers(measured)
    assert len(values) > 50
    assert all(math.isfinite(v) for v in values)
    assert not re.search(r"\b(nan|inf)\b", results["markdown"], flags=re.I)


@pytest.mark.slow
def test_each_missed_goal_has_a_note(results):
    for heading, body in sections(results["markdown"]).items():
        if "**no**" in body:
            assert "*Note:*" in body, f"{heading}: a goal is missed without a note saying what limits it"


@pytest.mark.slow
def test_rungs_the_ladder_lacks_are_timed_as_the_teacher_with_plain_ddim(results):
    gen = results["generation"]
    rows = {r["steps"]: r for r in gen["rows"]}
    assert sorted(rows) == [1, 2, 4, 8, 16]
    assert rows[16]["source"] == "teacher" and rows[16]["speedup"] == pytest.approx(1.0)
    assert rows[8]["source"] == rows[2]["source"] == "teacher network, plain DDIM"
    assert rows[4]["source"] == rows[1]["source"] == "student (shipped)"
    assert results["student_steps"] == 8
    assert "teacher network, plain DDIM" in results["markdown"]


@pytest.mark.slow
def test_baseline_reencodes_audio_at_every_ddpm_step(results):
    b = results["baseline"]
    assert b["grid_len"] == 32 and b["grid_ends"] == (1023, 31)
    assert b["encoder_calls_per_run"] == 32
    assert b["finite"]


@pytest.mark.slow
def test_hubert_row_uses_a_much_larger_encoder_than_mel(results):
    rows = results["rtf"]["rows"]
    assert set(rows) == {"mel", "hubert"}
    assert rows["hubert"]["encoder_params"] > rows["mel"]["encoder_params"]
    assert all(0 < r["encoder_share"] < 1 for r in rows.values())


@pytest.mark.slow
def test_memory_children_generate_both_clips(results):
    mem = results["memory"]
    assert mem["short"]["frames"] == 30 and mem["long"]["frames"] == 24 * 30
    for child in mem.values():
        assert child["finite"]
        assert 0 < child["rss_import"] <= child["rss_loaded"] <= child["rss_peak"]


@pytest.mark.slow
def test_app_section_times_the_generate_callback(results):
    app = results["app"]
    assert "Talker.generate" in app["method"], app["method"]
    assert app["size"] == 64 and app["steps"] == 16  # the tiny ladder has no 8-step rung: its default is used
    if app["first_update"] is not None:  # a streaming callback: its first update comes before the video
        assert 0 < app["first_update"] <= app["time"]


def test_player_section_is_filled_from_json(tmp_path):
    path = tmp_path / "player_fps.json"
    path.write_text(json.dumps({"fps_single": 58.5, "fps_grid": 21.25, "first_frame_ms": 420.0}))
    md = "\n".join(bench._player_md(bench.read_player(path), True))
    assert "58.5 fps" in md and "21.2 fps" in md and "420.0 ms" in md
    assert "| ≤ 1000 ms | yes |" in md
    absent = "\n".join(bench._player_md(bench.read_player(tmp_path / "none.json"), True))
    assert "player_fps.json` is absent" in absent


def test_ddpm_grid_of_1024_steps_walks_every_timestep():
    grid = NoiseSchedule(1024).grid(1024)
    assert grid == list(range(1023, -1, -1))


def test_gru_is_sized_to_the_transformers_parameter_count():
    cfg = preset("cpu").model
    target = 1_500_000
    gru = bench.matched_gru(cfg, target, layers=2)
    params = sum(p.numel() for p in gru.parameters())
    assert abs(params - target) / target < 0.05
    x = torch.zeros(2, 10, cfg.motion_dim)
    out = gru(x, torch.tensor([3, 900]), torch.zeros(2, 10, cfg.audio_dim), torch.zeros(2, cfg.identity_dim),
              torch.ones(2, 10, dtype=torch.bool))
    assert out.shape == (2, 10, cfg.motion_dim)


def test_cli_refuses_a_missing_checkpoint_and_unknown_sections(tmp_path, capsys):
    assert bench.main(["--quick", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "b.md")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--sections", "generation,warp"])
    assert not Path(tmp_path / "b.md").exists()
