"""Bounded disk: request folders are pruned by age and total size (``diffusiontalker.cleanup.prune``), so the app's
disk use stays under its cap across 100 requests; folders of requests in flight are never touched; uploads are
capped in size by gradio (``max_file_size``) and expired by its cache deletion (``delete_cache``)."""

from __future__ import annotations

import inspect
import os
import time
from pathlib import Path

import pytest
from conftest import make_checkpoint, speechlike

import app
from diffusiontalker.audio import save_wav
from diffusiontalker.cleanup import disk_usage, prune, remove_if_empty
from diffusiontalker.pipeline import Pipeline

MB = 2**20


def _entry(root: Path, name: str, size: int, age_s: float = 0.0) -> Path:
    d = root / name
    d.mkdir()
    (d / "out.bin").write_bytes(b"\0" * size)
    t = time.time() - age_s
    os.utime(d, (t, t))
    return d


# --- prune ----------------------------------------------------------------------------------------------------
def test_disk_usage_counts_files_in_nested_folders(tmp_path):
    d = _entry(tmp_path, "a", 1000)
    (d / "sub").mkdir()
    (d / "sub" / "x").write_bytes(b"1" * 24)
    assert disk_usage(d) == 1024 and disk_usage(d / "out.bin") == 1000 and disk_usage(tmp_path / "nope") == 0


def test_prune_removes_entries_older_than_the_age_limit(tmp_path):
    old = _entry(tmp_path, "old", 10, age_s=7200)
    new = _entry(tmp_path, "new", 10, age_s=5)
    report = prune(tmp_path, max_age_s=3600)
    assert not old.exists() and new.exists()
    assert (report.removed, report.freed, report.remaining) == (1, 10, 10)


def test_prune_removes_the_oldest_until_under_the_size_budget(tmp_path):
    dirs = [_entry(tmp_path, f"req{i}", 100, age_s=100 - i) for i in range(6)]  # req0 is the oldest
    report = prune(tmp_path, max_bytes=350)
    assert [d.exists() for d in dirs] == [False, False, False, True, True, True]
    assert report.remaining == 300 <= 350 and report.largest == 100


def test_prune_keeps_requests_in_flight_and_leaves_room_with_reserve(tmp_path):
    dirs = [_entry(tmp_path, f"req{i}", 100, age_s=100 - i) for i in range(6)]
    report = prune(tmp_path, max_bytes=350, max_age_s=3600, keep=[dirs[0]], reserve=100)
    # req0 is in flight: kept although oldest; the rest go oldest first until 600 - removed + 100 <= 350
    assert [d.exists() for d in dirs] == [True, False, False, False, False, True]
    assert report.remaining + 100 <= 350


def test_prune_of_a_missing_root_is_a_no_op(tmp_path):
    assert prune(tmp_path / "never-made", max_bytes=0).removed == 0


def test_remove_if_empty(tmp_path):
    (tmp_path / "empty").mkdir()
    full = _entry(tmp_path, "full", 1)
    assert remove_if_empty(tmp_path / "empty") and not (tmp_path / "empty").exists()
    assert not remove_if_empty(full) and full.exists()


# --- the app --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    ckpt = make_checkpoint(tmp_path_factory.mktemp("disk_ckpt") / "one-step", steps=1)
    return app.build_demo(Pipeline.from_pretrained(ckpt), output_root=tmp_path_factory.mktemp("disk_out"))


@pytest.fixture
def talker(demo) -> app.Talker:
    return demo.talker


def _fake_render(anim, path, **kwargs) -> Path:
    """A stand-in for the OpenGL renderer (its cost, not its bytes, is the point here): a 200 kB 'video'."""
    Path(path).write_bytes(b"\0" * 200_000)
    return Path(path)


def _call(talker: app.Talker, wav: Path) -> tuple:
    out = talker.generate(str(wav), None, None, app.AUTO, None, None, 0.5, 1, 0, False)
    if inspect.isgenerator(out):  # a streamed callback: the last yield carries every output
        *_, out = out
    return out


def test_disk_stays_under_the_cap_across_100_requests(talker, tmp_path, monkeypatch):
    import diffusiontalker.render.video as video

    monkeypatch.setattr(video, "render_animation", _fake_render)
    wav = save_wav(tmp_path / "short.wav", speechlike(0.3, seed=4))
    cap = 20 * MB  # a few requests' worth (each writes ~5.5 MB, mostly the GLB head)
    monkeypatch.setattr(talker, "max_output_bytes", cap)
    usage, sizes = [], []
    for _ in range(100):
        files = _call(talker, wav)[-1]
        sizes.append(sum(Path(f).stat().st_size for f in files))
        assert all(Path(f).exists() for f in files)  # pruning never takes the request's own outputs
        usage.append(disk_usage(talker.output_root))
    print(f"\n100 requests of {min(sizes) / MB:.1f}-{max(sizes) / MB:.1f} MB: disk use peaked at "
          f"{max(usage) / MB:.1f} MB, {usage[-1] / MB:.1f} MB after the last (cap {cap / MB:.0f} MB; "
          f"unbounded it would be {sum(sizes) / MB:.0f} MB)")
    assert max(usage) <= cap
    assert sum(sizes) > 5 * cap  # the cap did real work
    assert len(list(talker.output_root.iterdir())) <= cap // min(sizes)


def test_app_prunes_stale_request_folders_and_empty_ones(talker, tmp_path, monkeypatch):
    import diffusiontalker.render.video as video

    monkeypatch.setattr(video, "render_animation", _fake_render)
    stale = _entry(talker.output_root, "req-from-yesterday", 10, age_s=app.STALE_SECONDS + 60)
    before = set(talker.output_root.iterdir())
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(Exception, match="empty"):
        _call(talker, empty)
    assert not stale.exists()
    assert set(talker.output_root.iterdir()) <= before  # the refused request left no folder behind
    assert not talker._active  # nothing stays marked as in flight


def test_uploads_are_capped_in_size_and_expire(demo):
    assert app.launch_options()["max_file_size"] == app.MAX_UPLOAD
    frequency, age = demo.delete_cache  # gradio deletes uploads and its copies of outputs older than `age`
    assert frequency <= age <= app.STALE_SECONDS
