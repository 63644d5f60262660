"""Safe writing and safe loading at the command line and the app's start.

* ``atomic_save`` (the CLI) and the exporters' writer never overwrite without ``--overwrite`` and leave no
  half-written file under the final name, nor a temporary file, when writing fails or is interrupted.
* A damaged checkpoint (missing file, unknown config key, wrong tensor shape, NaN weights, a pickle instead of
  safetensors) makes ``python -m diffusiontalker info DIR`` and the app's ``main()`` exit 2 with one line on stderr,
  and the pickle is never unpickled. ``load_checkpoint``'s own messages are tested in ``test_checkpoint.py``; the
  CLI's ``generate`` refusing to overwrite is ``test_cli.py::test_existing_output_needs_overwrite``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

import app
from diffusiontalker.cli import atomic_save, main
from diffusiontalker.errors import DiffusionTalkerError
from diffusiontalker.export import export_animation

REPO = Path(__file__).resolve().parents[1]


# --- atomic writes --------------------------------------------------------------------------------------------
def test_atomic_save_refuses_an_existing_file_without_overwrite(tmp_path):
    target = tmp_path / "out.npy"
    target.write_bytes(b"precious")
    with pytest.raises(DiffusionTalkerError, match="exists; pass --overwrite to replace it"):
        atomic_save(target, lambda p: p.write_bytes(b"new"), overwrite=False)
    assert target.read_bytes() == b"precious"
    assert atomic_save(target, lambda p: p.write_bytes(b"new"), overwrite=True) == target
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"]


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_atomic_save_interrupted_mid_write_leaves_nothing(tmp_path, exc):
    def half_write(p: Path) -> None:
        p.write_bytes(b"half of the frames")
        raise exc

    target = tmp_path / "clip.npy"
    with pytest.raises(type(exc)):
        atomic_save(target, half_write, overwrite=False)
    assert not list(tmp_path.iterdir())  # no final file, no temporary file
    # over an existing file: the old one survives whole
    target.write_bytes(b"old")
    with pytest.raises(type(exc)):
        atomic_save(target, half_write, overwrite=True)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["clip.npy"]


def test_cli_generate_interrupted_while_saving_leaves_no_file(tmp_path, speech_wav, tiny_checkpoint, monkeypatch,
                                                              capsys):
    real_save = np.save
    written: list[Path] = []

    def save_then_die(f, arr, *a, **k):
        real_save(f, arr[: len(arr) // 2], *a, **k)  # part of the frames reach the disk ...
        written.append(Path(f))
        raise KeyboardInterrupt  # ... then Ctrl-C

    monkeypatch.setattr(np, "save", save_then_die)
    out = tmp_path / "out"
    code = main(["generate", str(speech_wav), "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--quiet"])
    assert code == 130 and capsys.readouterr().err.strip() == "interrupted"
    assert written and written[0].parent == out and written[0].name != "speech.npy"  # a temporary name
    assert not list(out.iterdir())


def test_exporter_interrupted_mid_write_leaves_nothing(tmp_path, monkeypatch):
    from diffusiontalker.animation import Animation

    anim = Animation(np.full((4, 52), 0.5, np.float32))
    real = Path.write_text

    def die(self, *a, **k):
        real(self, "Timecode,Blend")
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", die)
    with pytest.raises(OSError, match="disk full"):
        export_animation(anim, tmp_path / "take.csv")
    assert not list(tmp_path.iterdir())


# --- damaged checkpoints at the CLI and the app's start -------------------------------------------------------
class _Payload:
    """Unpickling this creates ``marker``: proof that a pickle was (or was not) executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _edit_config(d: Path, edit) -> None:
    doc = json.loads((d / "config.json").read_text())
    edit(doc)
    (d / "config.json").write_text(json.dumps(doc))


def _edit_weights(d: Path, edit) -> None:
    state = load_file(str(d / "model.safetensors"))
    edit(state)
    save_file(state, str(d / "model.safetensors"))


def _first_float(state: dict) -> str:
    return next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 2)


def _damage(d: Path, how: str, marker: Path) -> str:
    """Damage the checkpoint copy ``d``; returns a regex of the one-line message expected."""
    if how == "missing weights":
        (d / "model.safetensors").unlink()
        return r"has no model\.safetensors"
    if how == "missing config":
        (d / "config.json").unlink()
        return r"has no config\.json"
    if how == "unknown config key":
        _edit_config(d, lambda doc: doc["config"]["model"].update(wings=2))
        return r"unknown key\(s\) \['wings'\]"
    if how == "wrong tensor shape":
        _edit_weights(d, lambda s: s.update({(k := _first_float(s)): s[k][:, :-1].contiguous()}))
        return r"has shape .* the config needs"
    if how == "nan weights":
        _edit_weights(d, lambda s: s[_first_float(s)].view(-1).__setitem__(0, float("nan")))
        return r"holds NaN or infinite values"
    if how == "pickle instead of safetensors":
        (d / "model.safetensors").unlink()
        (d / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
        return r"pickled weights are refused"
    raise AssertionError(how)


DAMAGES = ["missing weights", "missing config", "unknown config key", "wrong tensor shape", "nan weights",
           "pickle instead of safetensors"]


@pytest.mark.parametrize("how", DAMAGES)
def test_info_and_app_main_exit_2_on_a_damaged_checkpoint(how, tmp_path, tiny_checkpoint, capsys, monkeypatch):
    d = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    marker = tmp_path / "pwned"
    pattern = _damage(d, how, marker)
    assert main(["info", str(d)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and re.search(pattern, err), err
    monkeypatch.setattr(app, "DEFAULT_VERTEX_CHECKPOINT", str(tmp_path / "no-vertex-model"))
    assert app.main(["--checkpoint", str(d)]) == 2  # loads the weights at start, fails, never launches
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and re.search(pattern, err), err
    assert not marker.exists()


def test_info_subprocess_refuses_a_pickle_without_running_it(tmp_path, tiny_checkpoint):
    d = Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))
    marker = tmp_path / "pwned"
    _damage(d, "pickle instead of safetensors", marker)
    (d / "model.pt").write_bytes(pickle.dumps(_Payload(marker)))
    env = os.environ | {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "diffusiontalker", "info", str(d)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "pickled weights are refused" in proc.stderr
    assert not marker.exists()
