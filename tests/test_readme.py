"""The README's Python API example runs as written, on a tiny checkpoint and a generated wav."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from conftest import speechlike

from diffusiontalker.audio import save_wav

README = Path(__file__).resolve().parents[1] / "README.md"
CHECKPOINT = "checkpoints/default"
EXAMPLE_WAV = "assets/examples/ava.wav"
EXAMPLE_OUT = "out/ava.csv"


def first_python_block(text: str) -> str:
    match = re.search(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert match, "README.md has no ```python block"
    return match.group(1)


def test_readme_has_the_two_commands_first():
    text = README.read_text(encoding="utf-8")
    first_bash = re.search(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)
    assert first_bash and text.index("```bash") < text.index("```python")
    assert "make demo" in first_bash.group(1) and "make test" in first_bash.group(1)


def test_readme_api_example_runs(tmp_path, tiny_ladder, monkeypatch):
    code = first_python_block(README.read_text(encoding="utf-8"))
    for placeholder in (CHECKPOINT, EXAMPLE_WAV, EXAMPLE_OUT):
        assert placeholder in code, f"the README example no longer mentions {placeholder!r}; update this test"
    if "diffusiontalker.export" in code and importlib.util.find_spec("diffusiontalker.export") is None:
        pytest.skip("diffusiontalker.export is not written yet (another engineer's file); the example imports it")
    wav = save_wav(tmp_path / "ava.wav", speechlike(2.0, f0=180.0, seed=7))
    out = tmp_path / EXAMPLE_OUT  # its parent directory does not exist, as in a fresh clone
    code = (code.replace(CHECKPOINT, str(tiny_ladder)).replace(EXAMPLE_WAV, str(wav))
            .replace(EXAMPLE_OUT, str(out)))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    if EXAMPLE_OUT.endswith(".csv"):
        assert out.exists() and out.stat().st_size > 0
        header = out.read_text(encoding="utf-8").splitlines()[0]
        assert "JawOpen" in header or "jawOpen" in header
