"""The playground page in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver` packages, driven by Selenium) opens the page served from tiny runs, types into
fill-mask, contextual embeddings, QA, generation, in-context learning, the classifier, the tagger
and the image search, and checks what appears. Skipped, saying why, where Chromium, its driver or
Selenium is missing (`.ci/run` installs them when it can).

Each run type's panel is also saved as a screenshot: into a temporary folder, or into the folder
SELFSUP_SCREENSHOTS names; the README's pictures are made that way:

    SELFSUP_SCREENSHOTS=docs/serve python -m pytest tests/test_serve_browser.py

(with a CJK font installed, e.g. Debian's fonts-wqy-zenhei, or the Chinese shows as boxes).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="needs the serve extra: pip install -e .[serve]")
pytest.importorskip("uvicorn", reason="needs the serve extra: pip install -e .[serve]")
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="needs selenium (pip install -e .[test])"
)

from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from serve_helpers import make_tiny_runs, running_server  # noqa: E402

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no headless browser: apt-get install chromium chromium-driver (Debian)",
)
PASSAGE = "一二三四五六七八九十" * 4 + "【甲丙戊】" + "六七八九十" * 3


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    runs = make_tiny_runs(tmp_path_factory.getbasetemp() / "serve-runs")
    with running_server(runs) as address:
        yield address, runs


@pytest.fixture(scope="module")
def browser():
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look for downloads
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1000,900",
        "--force-device-scale-factor=1",
        "--lang=en-US",
    ):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = os.environ.get("SELFSUP_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_run(driver, url: str, run: str):
    """The page, showing run's tab; returns its panel."""
    driver.get(f"{url}/#{run}")
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.body.dataset.ready === 'true'")
    )
    panel = driver.find_element(By.CSS_SELECTOR, f'[data-run="{run}"].panel')
    assert panel.is_displayed()
    return panel


def type_into(panel, field: str, text: str) -> None:
    box = panel.find_element(By.CSS_SELECTOR, f'[data-field="{field}"]')
    box.clear()
    box.send_keys(text)


def submit(driver, panel, form: str, expected: str = "done"):
    """Click the form's main button and wait for its output to settle; returns the output."""
    panel.find_element(By.CSS_SELECTOR, f'[data-form="{form}"] button:not([type])').click()
    out = panel.find_element(By.CSS_SELECTOR, f'[data-out="{form}"]')
    try:
        WebDriverWait(driver, 60).until(
            lambda d: out.get_attribute("data-state") in ("done", "error")
        )
    except TimeoutException:
        pytest.fail(f"{form}: no result after 60 s: {out.text!r}")
    assert out.get_attribute("data-state") == expected, out.text
    return out


def save(driver, folder: Path, name: str) -> None:
    """A PNG of the page as it stands, cut to its content and reduced to 64 colours (small)."""
    from PIL import Image

    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1000, min(max(height + 100, 400), 2400))
    driver.execute_script("window.scrollTo(0, 0)")
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1000, 900)
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def test_fill_mask_and_contextual_embeddings(browser, url, screenshots):
    address, _ = url
    panel = open_run(browser, address, "bert")
    type_into(panel, "text", "中华人民共[MASK]国成立了。")
    out = submit(browser, panel, "fill-mask")
    labels = [e.text for e in out.find_elements(By.CSS_SELECTOR, ".bar-label")]
    values = [e.text for e in out.find_elements(By.CSS_SELECTOR, ".bar-value")]
    assert labels[0] == "和" and len(labels) == 5  # the tiny corpus is memorised
    assert all(v.endswith("%") for v in values)
    width = out.find_element(By.CSS_SELECTOR, ".bar-fill").value_of_css_property("width")
    assert float(width.removesuffix("px")) > 10  # the bar is drawn

    out = submit(browser, panel, "embeddings")  # the page's own example: 人 in two sentences
    assert len(out.find_elements(By.CSS_SELECTOR, "table.similarity td")) == 4
    assert len(out.find_elements(By.CSS_SELECTOR, "svg.scatter circle")) == 2
    # pick one more character (北 in the third sentence): three vectors now
    third = out.find_elements(By.CSS_SELECTOR, ".sentence")[2]
    third.find_elements(By.CSS_SELECTOR, ".char")[4].click()
    WebDriverWait(browser, 60).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, '[data-run="bert"] svg.scatter circle')) == 3
    )
    assert len(out.find_elements(By.CSS_SELECTOR, ".char.picked")) == 3
    save(browser, screenshots, "bert")

    type_into(panel, "text", "没有面具")
    out = submit(browser, panel, "fill-mask", expected="error")
    assert "no [MASK]" in out.find_element(By.CSS_SELECTOR, ".error").text


def test_question_answering(browser, url, screenshots):
    address, _ = url
    panel = open_run(browser, address, "qa")
    type_into(panel, "context", PASSAGE)
    type_into(panel, "question", "括号里是什么？")
    out = submit(browser, panel, "answer")
    assert out.find_element(By.CSS_SELECTOR, "mark").text == "甲丙戊"  # highlighted in place
    assert out.find_element(By.CSS_SELECTOR, "[data-answer]").text == "甲丙戊"
    assert PASSAGE in out.find_element(By.CSS_SELECTOR, ".passage").text
    assert len(out.find_elements(By.CSS_SELECTOR, ".bar-row")) == 5
    assert "windows" in out.text
    save(browser, screenshots, "qa")


def test_generation_and_in_context_learning(browser, url, screenshots):
    address, _ = url
    panel = open_run(browser, address, "gpt")
    type_into(panel, "prompt", "JULIET:\n")
    type_into(panel, "temperature", "0")
    type_into(panel, "max_tokens", "12")
    out = submit(browser, panel, "generate")
    generated = out.find_element(By.CSS_SELECTOR, "[data-generated]").text
    assert generated.startswith("Ay me"), generated  # greedy: the line the corpus repeats
    assert "12 pieces" in out.text or "pieces" in out.text

    rows = panel.find_elements(By.CSS_SELECTOR, ".example")
    for row, (text, label) in zip(rows, [("ROMEO", "x"), ("JULIET", "y")]):
        row.find_element(By.CSS_SELECTOR, '[data-example="text"]').send_keys(text)
        row.find_element(By.CSS_SELECTOR, '[data-example="label"]').send_keys(label)
    type_into(panel, "query", "ROMEO")
    out = submit(browser, panel, "icl")
    assert sorted(e.text for e in out.find_elements(By.CSS_SELECTOR, ".bar-label")) == ["x", "y"]
    assert "ROMEO -> x" in out.find_element(By.CSS_SELECTOR, "pre").text
    save(browser, screenshots, "gpt")


def test_classifier_and_tagger(browser, url, screenshots):
    address, _ = url
    panel = open_run(browser, address, "sentiment")
    type_into(panel, "text", "一二好三四")
    out = submit(browser, panel, "classify")
    assert out.find_element(By.CSS_SELECTOR, ".bar-label").text == "pos"
    save(browser, screenshots, "classification")

    panel = open_run(browser, address, "tagger")
    type_into(panel, "text", "一二北京三四")
    out = submit(browser, panel, "tag")
    tags = [e.text for e in out.find_elements(By.CSS_SELECTOR, ".unit-tag")]
    assert tags == ["O", "O", "B-LOC", "I-LOC", "O", "O"]
    save(browser, screenshots, "tagging")


def test_image_neighbours(browser, url, screenshots):
    address, runs = url
    panel = open_run(browser, address, "simclr")
    query = sorted(runs["images"].iterdir())[5]
    panel.find_element(By.CSS_SELECTOR, '[data-field="image"]').send_keys(str(query))
    type_into(panel, "k", "6")
    out = submit(browser, panel, "neighbours")
    captions = [e.text for e in out.find_elements(By.CSS_SELECTOR, "figcaption")]
    assert len(captions) == 7 and captions[1].startswith(query.name)  # itself, nearest
    loaded = browser.execute_script(
        "return Array.from(arguments[0].querySelectorAll('img')).every(i => i.naturalWidth > 0)",
        out,
    )
    assert loaded  # every neighbour's image came from the server
    save(browser, screenshots, "images")
