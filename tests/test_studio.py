"""``reenact studio``: the session logic matches ``reenact edit`` value for value, errors are messages, videos
render; and the page itself, driven in a real headless browser (Debian's chromium + chromedriver), renders a
moved slider exactly as ``reenact edit`` does."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.request
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import reenact.models
from reenact.cli import main
from reenact.data.video import read_video, write_video
from reenact.registry import save_checkpoint
from reenact.studio.session import StudioError, StudioSession, changed
from test_lpmm import fitted_lpmm  # noqa: F401 - the module-scoped fixture, shared
from test_lpmm_pose import fitted_lpmm_with_pose  # noqa: F401 - the same with a fitted pose map


@pytest.fixture(scope="module")
def lpmm_checkpoint(fitted_lpmm: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return save_checkpoint(fitted_lpmm, tmp_path_factory.mktemp("studio") / "lpmm.ckpt")


@pytest.fixture(scope="module")
def pechead_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = reenact.models.create_model("pechead", preset="tiny")  # 64 px: its encoder needs it
    return save_checkpoint(model, tmp_path_factory.mktemp("studio") / "pechead.ckpt")


@pytest.fixture(scope="module")
def portrait(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smooth synthetic portrait (not a detectable face: the crop tests use it for "no face found")."""
    y, x = np.mgrid[0:48, 0:48] / 47.0
    image = np.stack([0.3 + 0.5 * x, 0.2 + 0.6 * y, 0.7 - 0.4 * x * y], -1)
    image[12:36, 14:34] = [0.85, 0.65, 0.5]
    path = tmp_path_factory.mktemp("studio") / "portrait.png"
    Image.fromarray((image * 255).round().astype(np.uint8)).save(path)
    return path


def _image(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _edit(checkpoint: Path, source: Path, out: Path, *options: str) -> np.ndarray:
    assert main(["edit", "--ckpt", str(checkpoint), "--source", str(source), *options, "--out", str(out)]) == 0
    return _image(out)


def test_changed_counts_only_moved_sliders() -> None:
    assert changed([0.34, 1.5, -0.01], [0.3449, 0.2, 0.0], 0.05) == {1: 1.5}
    assert changed([0.0, 0.0], [0.0, 0.0], 0.05) == {}


def test_lpmm_sliders_render_as_reenact_edit(lpmm_checkpoint: Path, portrait: Path, tmp_path: Path) -> None:
    session = StudioSession.from_checkpoint(str(lpmm_checkpoint), presets_path=str(tmp_path / "presets.json"))
    assert session.editable and len(session.lpmm_sliders()) == 20
    session.set_source(_image(portrait))
    own = session.lpmm_source_values()
    shown = [round(value, 2) for value in own]  # what the page displays
    unedited = session.lpmm_render(shown)
    np.testing.assert_array_equal(unedited, _edit(lpmm_checkpoint, portrait, tmp_path / "plain.png"))

    moved = list(shown)
    moved[0], moved[3] = 1.5, -2.0
    edited = session.lpmm_render(moved)
    assert np.abs(edited.astype(int) - unedited).mean() > 0.5  # the picture changed
    np.testing.assert_array_equal(edited, _edit(lpmm_checkpoint, portrait, tmp_path / "moved.png",
                                                "--set", "0=1.5", "--set", "3=-2"))

    base = session.lpmm_render(session.lpmm_base_values(), "zero")
    np.testing.assert_array_equal(base, _edit(lpmm_checkpoint, portrait, tmp_path / "base.png", "--base", "zero"))

    # Presets: a built-in one moves the sliders; the sliders' change saved as a preset applies that change.
    assert session.lpmm_apply_preset("smile", shown) != shown
    path = session.lpmm_save_preset("my edit", moved)
    stored = json.loads(path.read_text())["presets"]["my edit"]["params"]
    assert stored.keys() == {"0", "3"}
    assert "my edit" in session.lpmm_preset_names()
    # (offsets are from the exact reference; the displayed positions differ from it by the 2-decimal rounding)
    np.testing.assert_allclose(session.lpmm_apply_preset("my edit", shown), moved, atol=0.006)
    with pytest.raises(StudioError, match="nothing to save"):
        session.lpmm_save_preset("empty", shown)


def test_lpmm_angle_sliders_render_as_reenact_edit_yaw(fitted_lpmm_with_pose: torch.nn.Module,  # noqa: F811
                                                        portrait: Path, tmp_path: Path) -> None:
    checkpoint = save_checkpoint(fitted_lpmm_with_pose, tmp_path / "lpmm_pose.ckpt")
    session = StudioSession.from_checkpoint(str(checkpoint))
    assert [spec.name for spec in session.lpmm_pose_sliders()] == ["yaw", "pitch", "roll"]
    session.set_source(_image(portrait))
    values = [round(value, 2) for value in session.lpmm_source_values()]
    angles = [round(value, 2) for value in session.lpmm_pose_reference()]
    np.testing.assert_array_equal(session.lpmm_render(values, "image", angles), session.lpmm_render(values))
    turned = session.lpmm_render(values, "image", [20.0, *angles[1:]])
    np.testing.assert_array_equal(turned, _edit(checkpoint, portrait, tmp_path / "yaw.png", "--yaw", "20"))
    frontal = session.lpmm_render(values, "image", [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(frontal, _edit(checkpoint, portrait, tmp_path / "frontal.png",
                                                 "--yaw", "0", "--pitch", "0", "--roll", "0"))


def test_pechead_sliders_render_as_reenact_edit(pechead_checkpoint: Path, portrait: Path, tmp_path: Path) -> None:
    session = StudioSession.from_checkpoint(str(pechead_checkpoint))
    pose_specs, expression_specs = session.pechead_sliders()
    assert [spec.name for spec in pose_specs] == ["yaw", "pitch", "roll"] and expression_specs
    session.set_source(_image(portrait))
    angles, expression = (np.round(values, 2).tolist() for values in session.pechead_reference(False))
    plain = session.pechead_render(angles, False, expression)
    np.testing.assert_array_equal(plain, _edit(pechead_checkpoint, portrait, tmp_path / "plain.png"))
    turned = session.pechead_render([25.0, *angles[1:]], False, expression)
    assert (turned != plain).any()  # an untrained generator moves little, but it moves
    np.testing.assert_array_equal(turned, _edit(pechead_checkpoint, portrait, tmp_path / "yaw.png", "--yaw", "25"))
    relative = session.pechead_render([0.0, 10.0, 0.0], True, [*expression[:1], 0.8, *expression[2:]])
    np.testing.assert_array_equal(relative, _edit(pechead_checkpoint, portrait, tmp_path / "rel.png",
                                                  "--relative_pose", "--pitch", "10", "--set", "1=0.8"))


def test_errors_are_messages_not_crashes(lpmm_checkpoint: Path, portrait: Path, tmp_path: Path) -> None:
    session = StudioSession.from_checkpoint(str(lpmm_checkpoint))
    with pytest.raises(StudioError, match="source image first"):
        session.lpmm_render([0.0] * 20)
    with pytest.raises(StudioError, match="no source image"):
        session.set_source(None)
    session.set_source(_image(portrait))
    with pytest.raises(StudioError, match="'lpmm' model; these controls need a 'pechead'"):
        session.pechead_render([0, 0, 0], False, [0.0])
    with pytest.raises(StudioError, match="face crop of the source image"):
        session.set_source(_image(portrait), crop=True)  # a smooth blob is no face
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(StudioError, match="driving video: .*broken.mp4"):
        session.reenact_video(broken)
    with pytest.raises(StudioError, match="no such checkpoint"):
        StudioSession.from_checkpoint(str(tmp_path / "missing.ckpt"))
    not_checkpoint = tmp_path / "notes.ckpt"
    not_checkpoint.write_text("hello")
    with pytest.raises(StudioError, match="notes.ckpt"):
        StudioSession.from_checkpoint(str(not_checkpoint))


def test_reenact_video_for_a_model_without_sliders(portrait: Path, tmp_path: Path) -> None:
    model = reenact.models.create_model("keypoint-warp", preset="tiny", image_size=32)
    session = StudioSession(model, checkpoint="keypoint-warp (untrained)")
    assert not session.editable
    session.set_source(_image(portrait))
    frames = (np.random.default_rng(0).random((6, 40, 40, 3)) * 255).astype(np.uint8)
    driving = write_video(tmp_path / "driving.mp4", frames, fps=10)
    seen: list[tuple[int, int]] = []
    out = session.reenact_video(driving, relative=True, out_dir=tmp_path / "videos",
                                progress=lambda done, total: seen.append((done, total)))
    video = read_video(out)
    assert video.shape == (6, 32, 32, 3) and seen[-1] == (6, 6)
    second = session.reenact_video(driving, out_dir=tmp_path / "videos")
    assert second != out and out.is_file()  # a second render never overwrites the first


def test_studio_help_and_bad_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["studio", "--help"])
    assert exit_info.value.code == 0
    assert "--ckpt" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="missing.ckpt not found"):
        main(["studio", "--ckpt", str(tmp_path / "missing.ckpt")])


# --------------------------------------------------------------------------------- the page, in a browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _click_visible(browser, xpath: str) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    element = next(element for element in browser.find_elements(By.XPATH, xpath) if element.is_displayed())
    browser.execute_script("arguments[0].click();", element)  # a message toast may lie over it


@pytest.fixture
def browser():  # noqa: ANN201 - a selenium WebDriver
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver (.ci/run does)")
    pytest.importorskip("gradio", reason="the studio extra is not installed: pip install -e '.[studio]'")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra)")
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1400"):
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_page_slider_renders_as_reenact_edit(browser, lpmm_checkpoint: Path, portrait: Path,  # noqa: ANN001
                                             tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from reenact.studio.app import build_app, launch

    session = StudioSession.from_checkpoint(str(lpmm_checkpoint), presets_path=str(tmp_path / "presets.json"))
    examples = tmp_path / "examples"
    examples.mkdir()
    shutil.copy(portrait, examples / "portrait.png")
    app = build_app(session, examples=examples, output_dir=tmp_path / "videos")
    port = _free_port()
    launch(app, "127.0.0.1", port, allowed_paths=[str(examples)], block=False)
    try:
        wait = WebDriverWait(browser, 60)
        browser.get(f"http://127.0.0.1:{port}")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#source input[type=file]"))
        browser.find_element(By.CSS_SELECTOR, "#source input[type=file]").send_keys(str(portrait))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result img"))
        first = browser.find_element(By.CSS_SELECTOR, "#result img").get_attribute("src")
        box = browser.find_element(By.CSS_SELECTOR, "#slider-p0 input[type=number]")
        wait.until(lambda d: box.get_attribute("value") not in ("", "0"))  # the source's own p1 arrived
        box.clear()
        box.send_keys("3")
        wait.until(lambda d: box.get_attribute("value") == "3")
        time.sleep(0.5)  # let the page take the typed value before the release (blur) sends it
        box.send_keys(Keys.TAB)  # leaving the box releases the slider
        started = time.perf_counter()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#result img").get_attribute("src") != first)
        seconds = time.perf_counter() - started
        rendered = browser.find_element(By.CSS_SELECTOR, "#result img").get_attribute("src")
        with urllib.request.urlopen(rendered) as response:
            shown = np.asarray(Image.open(BytesIO(response.read())).convert("RGB"))
        with urllib.request.urlopen(first) as response:
            before = np.asarray(Image.open(BytesIO(response.read())).convert("RGB"))
        expected = _edit(lpmm_checkpoint, portrait, tmp_path / "edit.png", "--set", "0=3")
        np.testing.assert_array_equal(shown, expected)
        assert (shown != before).any(), "moving the slider did not change the picture"
        assert seconds < 30, f"the slider took {seconds:.1f} s to render"

        # Picking the portrait from the examples loads it afresh: the sliders reset, the unedited picture returns.
        example = browser.find_elements(By.CSS_SELECTOR, "button.gallery-item, .gallery button")[0]
        browser.execute_script("arguments[0].click();", example)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#result img").get_attribute("src") != rendered)
        with urllib.request.urlopen(browser.find_element(By.CSS_SELECTOR, "#result img").get_attribute("src")) as r:
            np.testing.assert_array_equal(np.asarray(Image.open(BytesIO(r.read())).convert("RGB")), before)

        # An error is a message in the page, and the server keeps serving.
        _click_visible(browser, "//button[contains(., 'Reenact a video')]")
        browser.find_element(By.CSS_SELECTOR, "#render-video").click()
        wait.until(lambda d: "upload a driving video first" in d.page_source)
        screenshot = os.environ.get("REENACT_STUDIO_SCREENSHOT")
        if screenshot:  # README picture: REENACT_STUDIO_SCREENSHOT=docs/studio.png pytest -k page
            _click_visible(browser, "//button[contains(., 'Edit (LP parameters)')]")
            time.sleep(1.0)
            browser.save_screenshot(screenshot)
    finally:
        app.close()
