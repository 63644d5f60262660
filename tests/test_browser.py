"""A real browser (Debian Chromium driven by the ``playwright`` package) uploads a wav, clicks Generate, sees the
live WebGL preview first and then gets a playing video; an example clip loads when clicked. Prints the time from
click to the first preview frame (and from the end of sampling to it) and from click to video. Never runs
``playwright install``: it uses the system Chromium.

Env knobs (for measuring by hand, not needed in CI):
    DIFFUSIONTALKER_SCREENSHOT=docs/app_screenshot.png   also save the screenshot there
    DIFFUSIONTALKER_BROWSER_COMPARE=1                    tick "Compare with teacher" before generating
    DIFFUSIONTALKER_BROWSER_SAMPLES=3                    ask for that many diversity samples
    DIFFUSIONTALKER_BROWSER_STEPS=2                      pick that rung of the ladder (default: the page's 8)
    DIFFUSIONTALKER_BROWSER_SECONDS=10                   length of the uploaded clip (default 1 s)
    DIFFUSIONTALKER_BROWSER_CHECKPOINT=checkpoints/x     serve this checkpoint instead of the tiny test ladder
    DIFFUSIONTALKER_BROWSER_EXAMPLE=ava                  after the upload, click that example clip and animate it
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import soundfile as sf
from conftest import speechlike

import app
from diffusiontalker.audio import save_wav
from diffusiontalker.pipeline import Pipeline

CHROMIUM = Path("/usr/bin/chromium")
# ANGLE + SwiftShader give WebGL2 without a GPU, so the live preview draws (as in test_player_browser.py)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--use-gl=angle",
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def _require_chromium():
    """Skip (with a printed reason) when Chromium or playwright is missing, except under CI where that fails."""
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is absent (sudo apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is not installed (pip install -r requirements-dev.txt)"
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"browser test cannot run under CI: {problem}")
    print(f"skipping the browser test: {problem}")
    pytest.skip(problem)


def _load_example(page, name: str) -> None:
    """Click an example clip under the Generate button and wait until the speech input holds it."""
    page.locator("button").filter(has_text=name).first.click()
    page.wait_for_selector(f"#audio-input a[download][href$='/{name}.wav']", state="attached", timeout=30_000)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.browser
def test_browser_upload_generate_shows_video(tiny_ladder, tmp_path):
    _require_chromium()
    from playwright.sync_api import sync_playwright

    seconds = float(os.environ.get("DIFFUSIONTALKER_BROWSER_SECONDS", 1.0))
    screenshot_copy = os.environ.get("DIFFUSIONTALKER_SCREENSHOT")
    checkpoint = os.environ.get("DIFFUSIONTALKER_BROWSER_CHECKPOINT") or tiny_ladder
    wav = save_wav(tmp_path / "hello.wav", speechlike(seconds, seed=7))

    demo = app.build_demo(Pipeline.from_pretrained(checkpoint), output_root=tmp_path / "out")
    demo.queue(default_concurrency_limit=2, max_size=16)
    opts = app.launch_options("127.0.0.1", _free_port())
    demo.launch(prevent_thread_lock=True, quiet=True, **opts)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1366, "height": 900})
                page.goto(f"http://127.0.0.1:{opts['server_port']}/", wait_until="domcontentloaded")
                page.wait_for_selector("#generate", timeout=30_000)
                page.set_input_files("#audio-input input[type=file]", str(wav))
                page.wait_for_selector("#audio-input audio, #audio-input wave, #audio-input .waveform-container",
                                       state="attached", timeout=30_000)  # the upload reached the component
                example = os.environ.get("DIFFUSIONTALKER_BROWSER_EXAMPLE")
                if example:
                    _load_example(page, example)
                    seconds = sf.info(str(app.EXAMPLES_DIR / f"{example}.wav")).duration
                if os.environ.get("DIFFUSIONTALKER_BROWSER_STEPS"):
                    page.click("#steps input")
                    page.get_by_role("option", name=f"{os.environ['DIFFUSIONTALKER_BROWSER_STEPS']} steps").click()
                if os.environ.get("DIFFUSIONTALKER_BROWSER_COMPARE"):
                    page.get_by_label("Compare with teacher").check()
                if os.environ.get("DIFFUSIONTALKER_BROWSER_SAMPLES"):
                    box = page.locator("#samples input[type=number]")
                    box.fill(os.environ["DIFFUSIONTALKER_BROWSER_SAMPLES"])
                    box.press("Enter")
                page.evaluate("() => document.querySelector('#generate').addEventListener('click', () => "
                              "{ window.dtClickedAt = performance.now(); }, {capture: true})")
                tic = time.perf_counter()
                page.click("#generate")
                # preview first: the WebGL player draws the result while the mp4 is still rendering
                page.wait_for_selector("#preview canvas[data-ready='1']", state="attached", timeout=300_000)
                first = page.evaluate("""() => { const p = window.dtPlayers['dt-preview'];
                    return {clickToFrame: p.firstFrameAt - window.dtClickedAt,
                            frameEpoch: (performance.timeOrigin + p.firstFrameAt) / 1000, tiles: p.tiles.length,
                            frames: p.tiles[0].T, error: p.el.getAttribute('data-error')}; }""")
                page.wait_for_selector("#main-video video[src]", state="attached", timeout=300_000)
                click_to_video = time.perf_counter() - tic
                timeline = demo.talker.last_timeline
                after_sampling = first["frameEpoch"] - timeline["sampled"]
                steps_label = page.input_value("#steps input")
                print(f"click-to-first-preview-frame: {first['clickToFrame'] / 1000:.2f} s "
                      f"({after_sampling:.2f} s after sampling ended); click-to-video: {click_to_video:.1f} s; "
                      f"for a {seconds:g} s clip ({steps_label}, {first['tiles']} preview tile(s))")
                assert first["error"] is None and first["tiles"] >= 1
                assert abs(first["frames"] - round(seconds * 30)) <= 1
                assert first["frameEpoch"] < timeline["videos"]  # the preview was drawn before the videos were done
                src = page.get_attribute("#main-video video", "src")
                assert src and (".mp4" in src or src.startswith("blob:"))
                page.wait_for_timeout(1500)  # let the plot and the other outputs paint
                # the videos' arrival did not remount the player (its audio keeps playing); with "compare" the
                # teacher's tile remounted it once before
                mounted = page.evaluate("() => { const p = window.dtPlayers['dt-preview'];"
                                        " return (performance.timeOrigin + p.mountedAt) / 1000; }")
                assert mounted < timeline["videos"]
                # show the preview mid-sentence for the screenshot
                page.evaluate("""async () => { const a = window.dtPlayers['dt-preview'].audio;
                    if (a.readyState < 1) await new Promise(r => a.addEventListener('loadedmetadata', r, {once: true}));
                    await new Promise(r => { a.addEventListener('seeked', r, {once: true});
                                             a.currentTime = a.duration * 0.45; });
                    for (let i = 0; i < 3; i++) await new Promise(r => requestAnimationFrame(r)); }""")
                print(page.inner_text("#timings"))
                shot = tmp_path / "app_screenshot.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000
                if screenshot_copy:
                    Path(screenshot_copy).parent.mkdir(parents=True, exist_ok=True)
                    Path(screenshot_copy).write_bytes(shot.read_bytes())
                # an example clip loads into the speech input when clicked
                if app.example_files() and not example:
                    _load_example(page, Path(app.example_files()[0]).stem)
            finally:
                browser.close()
    finally:
        demo.close()
