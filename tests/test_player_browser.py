"""The WebGL2 player in a real browser: Debian Chromium, headless, software GL (SwiftShader through ANGLE).

Run ``python tests/test_player_browser.py`` to print the player's speed (fps at 512², one head and a 2×2 grid;
time from page load to the first frame of a 10 s clip).
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_preview import JAW, jaw_animation, stand_in_rig  # noqa: E402

from diffusiontalker.animation import Animation  # noqa: E402
from diffusiontalker.render import preview  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
# --use-angle=swiftshader + --enable-unsafe-swiftshader give WebGL2 without a GPU (checked: ANGLE/SwiftShader
# Vulkan, MAX_TEXTURE_SIZE 8192); autoplay lets the tests call audio.play() without a user gesture.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--use-gl=angle",
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--autoplay-policy=no-user-gesture-required"]
BACKGROUND = np.array([244, 244, 246])  # the tile clear colour (0.955, 0.955, 0.965)

SEEK_JS = """async ([id, t]) => {
  const p = window.dtPlayers[id], a = p.audio;
  if (a.readyState < 1) await new Promise(r => a.addEventListener('loadedmetadata', r, {once: true}));
  await new Promise(r => { a.addEventListener('seeked', r, {once: true}); a.currentTime = t; });
  for (let i = 0; i < 3; i++) await new Promise(r => requestAnimationFrame(r));
  return {time: a.currentTime, frame: p.frame, attr: Number(p.canvas.getAttribute('data-frame'))};
}"""


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing on CI: install the 'chromium' apt package")
        reason = f"{CHROMIUM} not found: install Debian's chromium package to run the browser tests"
        print(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def open_page(browser, path: Path, html: str):
    path.write_text(html, encoding="utf-8")
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_selector("canvas[data-ready='1']", timeout=20_000)
    assert not errors, errors
    assert page.evaluate("() => document.querySelector('[data-dt-player]').getAttribute('data-error')") is None
    return page


def canvas_pixels(page) -> np.ndarray:
    from PIL import Image

    png = page.locator("canvas").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)  # (H, W, 3)


def foreground(img: np.ndarray) -> np.ndarray:
    return np.abs(img - BACKGROUND).max(-1) > 20  # (H, W) bool


def patch(img: np.ndarray, xy: list[float], r: int) -> np.ndarray:
    x, y = round(xy[0]), round(xy[1])
    return img[max(0, y - r):y + r, max(0, x - r):x + r]


def test_head_is_drawn_and_the_mouth_follows_the_audio_time(browser, tmp_path):
    from diffusiontalker.render.rig import load_head

    rig = load_head()
    anim = jaw_animation(frames=60, switch=30)  # jaw closed for t < 1 s, open after
    page = open_page(browser, tmp_path / "head.html", preview.standalone_page([anim], size=512))
    try:
        lips = rig.neutral[rig.regions["lips"]].mean(0).tolist()
        brows = rig.neutral[rig.regions["brows"]].mean(0).tolist()
        page.evaluate(SEEK_JS, ["dt-preview", 0.5])
        closed = canvas_pixels(page)
        at_lips = page.evaluate("p => window.dtPlayers['dt-preview'].project(0, p)", lips)
        at_brows = page.evaluate("p => window.dtPlayers['dt-preview'].project(0, p)", brows)
        page.evaluate(SEEK_JS, ["dt-preview", 1.5])
        opened = canvas_pixels(page)
    finally:
        page.close()
    assert closed.shape == (512, 512, 3)
    fg = foreground(closed)
    assert 0.15 < fg.mean() < 0.9, "the head should fill a good part of the canvas"
    assert fg[256, 256], "the canvas centre should show the face"
    mouth_change = np.abs(patch(opened, at_lips, 28) - patch(closed, at_lips, 28)).mean()
    brow_change = np.abs(patch(opened, at_brows, 20) - patch(closed, at_brows, 20)).mean()
    assert mouth_change > 8.0, f"mouth pixels barely changed ({mouth_change:.1f}) although jawOpen went 0 -> 1"
    assert brow_change < 1.0, f"the brows changed ({brow_change:.1f}) but only jawOpen moved"


def test_gpu_and_cpu_morph_blending_draw_the_same_face(browser, tmp_path):
    anim = jaw_animation(frames=60, switch=0)
    anim.values[:, 1:20] = 0.3  # many active morphs at once
    html = preview.standalone_page([anim], size=256)
    images = {}
    for mode in ("gpu", "cpu"):
        page = open_page(browser, tmp_path / f"{mode}.html",
                         html.replace('data-dt-player="1"', f'data-dt-player="1" data-dt-blend="{mode}"'))
        try:
            assert page.evaluate("() => window.dtPlayers['dt-preview'].blend") == mode
            page.evaluate(SEEK_JS, ["dt-preview", 1.0])
            images[mode] = canvas_pixels(page)
        finally:
            page.close()
    diff = np.abs(images["gpu"] - images["cpu"])
    assert foreground(images["gpu"]).mean() > 0.15
    assert diff.mean() < 0.5 and (diff.max(-1) > 24).mean() < 0.002, (diff.mean(), (diff.max(-1) > 24).mean())


def test_frame_equals_audio_time_times_fps_after_seeks_and_while_playing(browser, tmp_path):
    anim = jaw_animation(frames=90, fps=30.0)
    page = open_page(browser, tmp_path / "seek.html", preview.standalone_page([anim], size=256))
    try:
        for t in (0.0, 0.37, 2.02, 1.49, 0.66, 2.99):
            got = page.evaluate(SEEK_JS, ["dt-preview", t])
            want = min(round(got["time"] * 30.0), 89)
            assert abs(got["frame"] - want) <= 1 and got["attr"] == got["frame"], (t, got)
        playing = page.evaluate("""async () => {
            const p = window.dtPlayers['dt-preview'], a = p.audio;
            a.currentTime = 0.2;
            try { await a.play(); } catch (e) { return {error: String(e)}; }
            await new Promise(r => setTimeout(r, 400));
            await new Promise(r => requestAnimationFrame(r));
            const out = {time: a.currentTime, frame: p.frame};
            a.pause();
            return out;
        }""")
    finally:
        page.close()
    if "error" not in playing:  # audio output may be unavailable on a headless box; seeking is tested above
        assert playing["time"] > 0.25
        assert abs(playing["frame"] - round(playing["time"] * 30.0)) <= 2, playing


def test_side_by_side_draws_every_tile_of_any_mesh(browser, tmp_path):
    rig = stand_in_rig()
    anims = [jaw_animation(switch=s) for s in (0, 10, 20)]
    offsets = np.zeros((60, len(rig.neutral), 3), np.float32)
    offsets[:, :, 1] = np.linspace(0.0, 0.02, 60)[:, None]  # the whole mesh drifts up
    anims.append(Animation(rig.neutral[None] + offsets, kind="vertex", template=rig.neutral, faces=rig.faces))
    labels = ["teacher", "student", "sample 1", "vertex model"]
    page = open_page(browser, tmp_path / "grid.html", preview.standalone_page(anims, labels, size=512, rig=rig))
    try:
        page.evaluate(SEEK_JS, ["dt-preview", 1.0])
        img = canvas_pixels(page)
        shown = page.evaluate("() => [...document.querySelectorAll('.dt-label')].map(e => e.textContent)")
        frames = page.evaluate("() => window.dtPlayers['dt-preview'].frames")
    finally:
        page.close()
    assert img.shape == (512, 512, 3) and shown == labels and frames == [30, 30, 30, 30]
    fg = foreground(img)
    for i, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        tile = fg[r * 256:(r + 1) * 256, c * 256:(c + 1) * 256]
        assert tile.mean() > 0.1, f"tile {i} ({labels[i]}) is blank"


def test_drag_orbits_wheel_zooms_and_double_click_resets(browser, tmp_path):
    page = open_page(browser, tmp_path / "orbit.html",
                     preview.preview_html([jaw_animation(audio=False)], size=256, rig=stand_in_rig()))
    try:
        box = page.locator("canvas").bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

        def settle():
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")

        base = page.evaluate("() => { const p = window.dtPlayers['dt-preview']; return [p.yaw, p.pitch, p.zoom]; }")
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx + 60, cy + 20, steps=4)
        page.mouse.up()
        page.mouse.wheel(0, 300)
        settle()
        moved = page.evaluate("() => { const p = window.dtPlayers['dt-preview']; return [p.yaw, p.pitch, p.zoom]; }")
        page.mouse.dblclick(cx, cy)
        settle()
        reset = page.evaluate("() => { const p = window.dtPlayers['dt-preview']; return [p.yaw, p.pitch, p.zoom]; }")
    finally:
        page.close()
    assert moved[0] < base[0] and moved[1] > base[1] and moved[2] > base[2]
    assert reset == base


def gradio_demo(make_html):
    """The app's recipe: the player + head through gr.HTML(head=...), results as script-free snippets."""
    import gradio as gr

    with gr.Blocks() as demo:
        button = gr.Button("generate", elem_id="go")
        view = gr.HTML(elem_id="preview", head=preview.player_head(stand_in_rig()), js_on_load=preview.JS_ON_LOAD)
        button.click(make_html, outputs=view)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    return demo, url


def test_player_mounts_inside_gradio_html_and_remounts_on_each_result(browser):
    calls = []

    def make_html() -> str:
        calls.append(1)
        anims = [jaw_animation(), jaw_animation(switch=5)]
        return preview.preview_html(anims, ["teacher", f"student (run {len(calls)})"], embed_player=False,
                                    embed_head=False,
                                    rig=stand_in_rig(), element_id="pv")

    demo, url = gradio_demo(make_html)
    page = browser.new_page()
    try:
        page.goto(url)
        page.click("#go")
        page.wait_for_selector("#pv canvas[data-ready='1']", timeout=30_000)
        page.evaluate("() => { window.firstPlayer = window.dtPlayers['pv']; }")
        page.click("#go")
        page.wait_for_function("() => window.dtPlayers['pv'] && window.dtPlayers['pv'] !== window.firstPlayer"
                               " && window.dtPlayers['pv'].ready", timeout=30_000)
        state = page.evaluate("""() => ({canvases: document.querySelectorAll('#preview canvas').length,
            oldDisposed: window.firstPlayer.gl === null, tiles: window.dtPlayers['pv'].tiles.length})""")
    finally:
        page.close()
        demo.close()
    assert len(calls) == 2
    assert state == {"canvases": 1, "oldDisposed": True, "tiles": 2}


def measure(browser, tmp_path: Path) -> dict[str, float]:
    """Draws per second at 512² (one head, 2×2 grid) and page-load -> first-frame time for a 10 s clip."""
    import time

    rng = np.random.default_rng(0)
    t = np.arange(300) / 30.0

    def speech(seed: int) -> Animation:
        w = np.clip(rng.normal(0.1, 0.05, (300, 52)), 0, 1).astype(np.float32)
        w[:, JAW] = 0.4 + 0.4 * np.sin(2 * np.pi * (3.0 + seed * 0.3) * t)
        audio = (0.1 * np.sin(2 * np.pi * 180 * np.arange(160_000) / 16_000)).astype(np.float32)
        return Animation(w, audio=audio, model=f"sample {seed}")

    out = {}
    for name, n in (("one_head", 1), ("grid_2x2", 4)):
        t0 = time.perf_counter()
        html = preview.standalone_page([speech(i) for i in range(n)], size=512)
        out[f"{name}_build_s"] = time.perf_counter() - t0
        page = open_page(browser, tmp_path / f"{name}.html", html)
        out[f"{name}_load_to_first_frame_ms"] = page.evaluate("() => window.dtPlayers['dt-preview'].firstFrameAt")
        out[f"{name}_mount_to_first_frame_ms"] = page.evaluate(
            "() => { const p = window.dtPlayers['dt-preview']; return p.firstFrameAt - p.mountedAt; }")
        out[f"{name}_fps"] = page.evaluate("""async () => {
            const p = window.dtPlayers['dt-preview']; p.benchmark = true;
            const c0 = p.drawCount, t0 = performance.now();
            await new Promise(r => setTimeout(r, 2000));
            p.benchmark = false;
            return (p.drawCount - c0) / ((performance.now() - t0) / 1000);
        }""")
        out[f"{name}_raf_hz"] = page.evaluate("""async () => {
            let n = 0; const t0 = performance.now();
            await new Promise(r => { function f() { n++; if (performance.now() - t0 < 1000) requestAnimationFrame(f);
                else r(); } requestAnimationFrame(f); });
            return n / ((performance.now() - t0) / 1000);
        }""")
        out[f"{name}_page_mb"] = len(html) / 1e6
        page.close()
    # the app path: click -> server builds the snippet (head already in the page) -> first frame drawn
    demo, url = gradio_demo(lambda: preview.preview_html([speech(0)], embed_player=False, embed_head=False,
                                                         rig=stand_in_rig(), element_id="pv"))
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#go")
    page.evaluate("() => document.querySelector('#go').addEventListener('click', () => "
                  "{ window.clickedAt = performance.now(); }, {capture: true})")
    page.click("#go")
    page.wait_for_selector("#pv canvas[data-ready='1']", timeout=30_000)
    out["gradio_click_to_first_frame_ms"] = page.evaluate("() => window.dtPlayers['pv'].firstFrameAt - clickedAt")
    out["gradio_click_to_mount_ms"] = page.evaluate("() => window.dtPlayers['pv'].mountedAt - clickedAt")
    page.close()
    demo.close()
    return out


if __name__ == "__main__":
    import json
    import sys
    import tempfile

    from playwright.sync_api import sync_playwright

    preview.head_payload()  # built once per process, like the app does at start
    with sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        figures = measure(b, Path(tmp))
        for k, v in figures.items():
            print(f"{k:36s} {v:10.2f}")
        b.close()
    if len(sys.argv) > 2 and sys.argv[1] == "--json":  # the figures bench/bench.py puts in BENCHMARKS.md
        # click -> first frame in a Gradio app whose callback only builds the snippet: the time a user waits for the
        # preview after sampling ends
        Path(sys.argv[2]).write_text(json.dumps({
            "fps_single": figures["one_head_fps"], "fps_grid": figures["grid_2x2_fps"],
            "first_frame_ms": figures["gradio_click_to_first_frame_ms"],
            "page_load_to_first_frame_ms (10 s clip)": figures["one_head_load_to_first_frame_ms"]}, indent=2))
