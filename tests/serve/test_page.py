"""The service's page in a real headless Chromium: upload a photo, see its maps."""

from __future__ import annotations

import numpy as np
import pytest
from chromium import chromium
from conftest import DEFAULT_BUNDLE, SAMPLES
from serving import Server

from scorecam_onnx import load_image

pytestmark = [pytest.mark.serve, pytest.mark.browser]


def _jet(v: float) -> np.ndarray:
    """OpenCV's JET colour map, piecewise linear (the page draws the same)."""
    return np.round(
        255 * np.clip([1.5 - abs(4 * v - 3), 1.5 - abs(4 * v - 2), 1.5 - abs(4 * v - 1)], 0, 1)
    )


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


@pytest.fixture(scope="module")
def server(detectors):
    srv = Server(
        "--model",
        f"efficientnet-lite0={DEFAULT_BUNDLE}",
        "--method",
        "faster-scorecam",
        "--model",
        f"yolo={detectors['yolov8']}",
    )
    yield srv
    srv.stop()


def _pixel(driver, canvas: str, x: int, y: int) -> np.ndarray:
    data = driver.execute_script(
        "return Array.from(document.getElementById(arguments[0]).getContext('2d')"
        ".getImageData(arguments[1], arguments[2], 1, 1).data);",
        canvas,
        int(x),
        int(y),
    )
    return np.array(data[:3], dtype=float)


def test_upload_shows_overlay_saliency_and_classes(browser, server, default_explainer):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 120)
    browser.get(server.url)
    assert Select(browser.find_element(By.ID, "method")).first_selected_option.text == (
        "faster-scorecam"
    )
    browser.find_element(By.ID, "file").send_keys(str(SAMPLES / "chelsea.png"))
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-explained") == "1")

    items = browser.find_elements(By.CSS_SELECTOR, "#classes li")
    assert len(items) == 5 and items[0].text.startswith("Egyptian cat (285)")
    choices = [
        o.get_attribute("value") for o in Select(browser.find_element(By.ID, "class")).options
    ]
    assert choices[0] == "" and len(choices) == 6 and "285" in choices
    assert "forwards" in browser.find_element(By.ID, "stats").text

    # The saliency canvas shows the server's map in JET at the original size.
    want = default_explainer.explain_one(SAMPLES / "chelsea.png", method="faster-scorecam")
    size = browser.execute_script(
        "const c = document.getElementById('saliency'); return [c.height, c.width];"
    )
    assert tuple(size) == want.saliency.shape
    for y, x in [
        np.unravel_index(np.argmax(want.saliency), want.saliency.shape),
        (10, 10),
        (150, 300),
    ]:
        assert np.abs(_pixel(browser, "saliency", x, y) - _jet(want.saliency[y, x])).max() <= 2
    # The overlay blends it over the photo; at opacity 0 it is the photo.
    y, x = 120, 200
    rgb = load_image(SAMPLES / "chelsea.png")[y, x].astype(float)
    blend = 0.5 * rgb + 0.5 * _jet(want.saliency[y, x])
    assert np.abs(_pixel(browser, "overlay", x, y) - blend).max() <= 3
    browser.execute_script(
        "const s = document.getElementById('opacity'); s.value = 0;"
        "s.dispatchEvent(new Event('input'));"
    )
    assert np.abs(_pixel(browser, "overlay", x, y) - rgb).max() <= 2

    # Choosing another class explains that class.
    other = choices[2]
    Select(browser.find_element(By.ID, "class")).select_by_value(other)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-explained") == "2")
    explained = browser.find_element(By.CSS_SELECTOR, "#classes li.explained").text
    assert f"({other})" in explained
    assert "Done" in browser.find_element(By.ID, "status").text


def test_a_detector_shows_its_detections_and_draws_the_box(browser, server, detectors):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from scorecam_onnx import DRise, Explainer

    browser.get(server.url)
    Select(browser.find_element(By.ID, "model")).select_by_value("yolo")
    Select(browser.find_element(By.ID, "method")).select_by_value("drise")
    browser.find_element(By.ID, "file").send_keys(str(SAMPLES / "chelsea.png"))
    WebDriverWait(browser, 120).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-explained") == "1"
    )
    local = Explainer(detectors["yolov8"])
    found = local.detect(SAMPLES / "chelsea.png")
    want = local.explain(SAMPLES / "chelsea.png", None, DRise())[0]
    items = browser.find_elements(By.CSS_SELECTOR, "#classes li")
    assert items[0].text.startswith(f"{found[0].label} ({found[0].class_id})")
    assert len(items) == len({d.class_id for d in found})
    x1, y1 = want.box[:2]
    inside_caption = _pixel(browser, "overlay", x1 + 2, y1 - 12)  # its dark background
    photo = load_image(SAMPLES / "chelsea.png")[round(y1 - 12), round(x1 + 2)].astype(float)
    assert inside_caption.max() <= 40 < photo.max()


def test_a_dicom_file_is_shown_as_the_model_reads_it(browser, server, tmp_path, default_explainer):
    """The browser cannot show a DICOM file: the page shows the server's picture of it."""
    from dicom_files import write_dicom
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ramp = np.add.outer(np.arange(90) * 20, np.arange(120) * 10)  # 12-bit, dark to bright
    write_dicom(tmp_path / "scan.dcm", ramp)
    browser.get(server.url)
    browser.find_element(By.ID, "file").send_keys(str(tmp_path / "scan.dcm"))
    WebDriverWait(browser, 120).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-explained") == "1"
    )
    size = browser.execute_script(
        "const c = document.getElementById('overlay'); return [c.height, c.width];"
    )
    assert tuple(size) == (90, 120)
    browser.execute_script(
        "const s = document.getElementById('opacity'); s.value = 0;"
        "s.dispatchEvent(new Event('input'));"
    )
    shown = default_explainer.preprocess(tmp_path / "scan.dcm")[0]
    for y, x in [(5, 5), (45, 60), (85, 115)]:
        assert np.abs(_pixel(browser, "overlay", x, y) - shown[y, x]).max() <= 2


def test_a_bad_file_shows_the_servers_error(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    browser.get(server.url)
    browser.find_element(By.ID, "file").send_keys(str(bad))
    status = WebDriverWait(browser, 60).until(
        lambda d: (
            d.find_element(By.ID, "status").text.startswith("Error")
            and d.find_element(By.ID, "status").text
        )
    )
    assert "not an image OpenCV can decode" in status


def test_a_phone_photo_gets_a_small_map_upsampled_on_the_canvas(
    browser, server, tmp_path, default_explainer
):
    """A 4000×3000 photo: the page asks for a map of at most 512 pixels a side (a few
    hundred kB of JSON instead of 64 MB) and stretches it over the photo."""
    import cv2
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = cv2.resize(
        load_image(SAMPLES / "chelsea.png"), (4000, 3000), interpolation=cv2.INTER_CUBIC
    )
    path = tmp_path / "phone.jpg"
    cv2.imwrite(str(path), photo[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    browser.get(server.url)
    browser.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(browser, 180).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-explained") == "1"
    )

    full = default_explainer.explain_one(path.read_bytes(), method="faster-scorecam").saliency
    want = cv2.resize(full, (512, 384), interpolation=cv2.INTER_AREA)
    size = browser.execute_script(
        "const c = document.getElementById('saliency'); return [c.height, c.width];"
    )
    assert tuple(size) == (384, 512)
    for y, x in [np.unravel_index(np.argmax(want), want.shape), (10, 10), (200, 300)]:
        assert np.abs(_pixel(browser, "saliency", x, y) - _jet(want[y, x])).max() <= 2
    overlay = browser.execute_script(
        "const c = document.getElementById('overlay'); return [c.height, c.width];"
    )
    assert tuple(overlay) == (3000, 4000)
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes("
        "'explain?')).map(e => [e.encodedBodySize, e.duration]);"
    )
    body, milliseconds = fetched[-1]
    print(f"phone photo: {body} bytes of JSON, {milliseconds:.0f} ms")
    assert 0 < body < 2 * 2**20  # the full-size map would be 64 MB


def test_the_page_asks_for_an_api_key_and_keeps_it_for_the_tab(browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    keyed = Server(
        "--model",
        f"efficientnet-lite0={DEFAULT_BUNDLE}",
        "--method",
        "reciprocam",
        "--api-key",
        "page-key-Ut42",
    )
    try:
        browser.get(keyed.url)
        browser.find_element(By.ID, "file").send_keys(str(SAMPLES / "chelsea.png"))
        wait = WebDriverWait(browser, 60)
        prompt = wait.until(lambda d: _alert(d))
        assert "needs an API key" in prompt.text
        prompt.send_keys("page-key-Ut42")
        prompt.accept()
        wait.until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-explained") == "1"
        )
        assert (
            browser.execute_script("return sessionStorage.getItem('scorecam-api-key');")
            == "page-key-Ut42"
        )
        assert "Egyptian cat" in browser.find_element(By.ID, "status").text
    finally:
        keyed.stop()


def _alert(driver):
    from selenium.common.exceptions import NoAlertPresentException

    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return False


def test_the_api_docs_render_offline(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server.url}docs")
    title = WebDriverWait(browser, 60).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title")
    )
    assert "scorecam-onnx API" in title[0].text or "scorecam-onnx" in title[0].text
    operations = browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    assert any("/explain" in o.text for o in operations)
    hosts = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).host);"
    )
    assert set(hosts) <= {server.url.split("/")[2]}
