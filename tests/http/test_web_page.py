"""The web page in a real browser (Debian's Chromium, headless, driven by Selenium): a 7 drawn
stroke by stroke on the canvas reads "7", and read row by row by the LSTM too; the uploaded
scene gets as many boxes as the detector finds; a date streams through the translator with its
attention map; screenshots of the page, wide and phone-sized, go to docs/images."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepserve import Client

from ..server_process import RunningServer

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
SHOTS = ROOT / "docs" / "images"
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver: `apt-get install chromium "
    "chromium-driver` (make test installs them where apt-get works)",
)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--window-size=1100,1000",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))


def _stroke(driver, pad, points: list[tuple[int, int]]) -> None:
    """Press at the first point, move through the others in small steps, release."""
    from selenium.webdriver.common.action_chains import ActionChains

    half = pad.size["width"] / 2
    scale = pad.size["width"] / 280
    actions = ActionChains(driver, duration=10)
    x, y = points[0]
    actions.move_to_element_with_offset(pad, int((x - 140) * scale), int((y - 140) * scale))
    actions.click_and_hold()
    for next_x, next_y in points[1:]:
        steps = 12
        for _ in range(steps):
            actions.move_by_offset(
                int((next_x - x) * scale / steps), int((next_y - y) * scale / steps)
            )
        x, y = next_x, next_y
    actions.release()
    actions.perform()
    assert half > 0


def _read_top(driver) -> list[str]:
    """The digit's top 3 once the page has no request in flight (it updates while drawing)."""
    from selenium.webdriver.common.by import By

    _wait(
        driver, lambda d: d.find_element(By.ID, "digit-top").get_attribute("data-state") == "done"
    )
    return driver.execute_script(
        "return [...document.querySelectorAll('#digit-top .label')].map(e => e.textContent)"
    )


def test_draw_a_seven_and_read_it(browser, bundled_server: RunningServer) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"http://127.0.0.1:{bundled_server.http_port}/")
    _wait(browser, lambda d: d.find_element(By.ID, "status").text == "ready")
    pad = browser.find_element(By.ID, "pad")
    _stroke(browser, pad, [(70, 70), (210, 70)])  # the bar
    _stroke(browser, pad, [(210, 70), (120, 235)])  # the stem
    labels = _read_top(browser)
    assert labels[0] == "7", labels
    assert "average batch" in browser.find_element(By.ID, "digit-meta").text
    # A digit given to the photo card's CIFAR-10 model comes back as a CIFAR-10 class: the card
    # says so before anyone tries.
    assert "only these ten classes" in browser.find_element(By.ID, "photo-hint").text


def test_upload_a_scene_and_count_its_boxes(browser, bundled_server: RunningServer) -> None:
    from selenium.webdriver.common.by import By

    scene = ROOT / "docs" / "images" / "scene.png"
    with Client(bundled_server.url) as client:
        expected = len(client.detect(str(scene), model="ssd"))
    browser.get(f"http://127.0.0.1:{bundled_server.http_port}/")
    _wait(browser, lambda d: d.find_element(By.ID, "scene").get_attribute("data-boxes"))
    browser.execute_script("document.getElementById('scene').dataset.boxes = ''")
    browser.find_element(By.ID, "scene-file").send_keys(str(scene))
    drawn = _wait(browser, lambda d: d.find_element(By.ID, "scene").get_attribute("data-boxes"))
    assert int(drawn) == expected >= 3
    chips = browser.find_elements(By.CSS_SELECTOR, "#scene-detections li")
    assert len(chips) == expected
    assert f"{expected} digits found" == browser.find_element(By.ID, "scene-count").text
    # The page as people see it: drawn digit and scene, wide and on a phone.
    pad = browser.find_element(By.ID, "pad")
    _stroke(browser, pad, [(70, 70), (210, 70)])
    _stroke(browser, pad, [(210, 70), (120, 235)])
    assert _read_top(browser)[0] == "7"
    # The same seven read row by row by the LSTM (28 requests of one sequence).
    browser.find_element(By.ID, "read-rows").click()
    _wait(browser, lambda d: d.find_element(By.ID, "rows-card").get_attribute("data-rows") == "28")
    _wait(browser, lambda d: d.find_element(By.ID, "rows-answer").text)
    assert browser.find_element(By.ID, "rows-answer").text.startswith("read: 7"), (
        browser.find_element(By.ID, "rows-meta").text
    )
    # A date through the translator, streamed a character an event, its attention map drawn.
    browser.find_element(By.ID, "translate").click()
    _wait(
        browser,
        lambda d: d.find_element(By.ID, "translate-card").get_attribute("data-tokens") == "10",
    )
    _wait(browser, lambda d: "characters streamed" in d.find_element(By.ID, "translate-meta").text)
    assert browser.find_element(By.ID, "translate-answer").text == "1979-05-03", (
        browser.find_element(By.ID, "translate-meta").text
    )
    # The whole page from its top: the window as tall as the page.
    browser.execute_script("window.scrollTo(0, 0)")
    browser.set_window_size(1100, 3900)
    browser.save_screenshot(str(SHOTS / "web-page.png"))
    browser.set_window_size(390, 5600)
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(SHOTS / "web-page-phone.png"))
    browser.set_window_size(1100, 1000)


def _open_card(browser, server: RunningServer, card_id: str):  # type: ignore[no-untyped-def]
    """The page, opened afresh, scrolled to one card."""
    from selenium.webdriver.common.by import By

    browser.set_window_size(1100, 1000)
    browser.get(f"http://127.0.0.1:{server.http_port}/")
    card = browser.find_element(By.ID, card_id)
    browser.execute_script("arguments[0].scrollIntoView()", card)
    return card


def test_the_served_policy_balances_the_pole_in_the_page(
    browser, bundled_server: RunningServer
) -> None:
    """The page simulates CartPole and asks the server for every push: 500 calls, the pole up."""
    from selenium.webdriver.common.by import By

    card = _open_card(browser, bundled_server, "cartpole-card")
    browser.find_element(By.ID, "cartpole-play").click()
    _wait(browser, lambda d: int(card.get_attribute("data-steps") or 0) >= 150)
    card.screenshot(str(SHOTS / "web-cartpole.png"))  # mid-episode, as people watch it
    _wait(browser, lambda d: card.get_attribute("data-done") == "1", timeout=60)
    meta = browser.find_element(By.ID, "cartpole-meta").text
    assert card.get_attribute("data-steps") == "500", meta
    assert meta.startswith("balanced for all 500 steps · 500 calls"), meta


def test_the_gan_card_draws_sixteen_digits_of_the_class_chosen(
    browser, bundled_server: RunningServer
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    card = _open_card(browser, bundled_server, "gan-card")
    _wait(browser, lambda d: card.get_attribute("data-drawn") == "7:0")  # on opening
    Select(browser.find_element(By.ID, "gan-class")).select_by_visible_text("3")
    _wait(browser, lambda d: card.get_attribute("data-drawn") == "3:0")
    browser.find_element(By.ID, "gan-more").click()
    _wait(browser, lambda d: card.get_attribute("data-drawn") == "3:16")
    meta = browser.find_element(By.ID, "gan-meta").text
    assert meta.startswith("16 digits '3' from seeds 16..31"), meta
    # The grid is the served digits, drawn: its top-left cell is seed 16's three.
    drawn = browser.execute_script(
        "const c = document.getElementById('gan-grid');"
        "return Array.from(c.getContext('2d').getImageData(0, 0, 70, 70).data)"
    )
    with Client(bundled_server.url) as client:
        expected = client.generate(digit=3, n=1, seed=16)[0]
    red = np.array(drawn[0::4], np.uint8).reshape(70, 70)
    nearest = np.arange(70) * 28 // 70  # the cell is 70 pixels, the digit 28
    scaled = expected[np.ix_(nearest, nearest)]
    assert np.abs(red.astype(int) - scaled.astype(int)).mean() < 20
    card.screenshot(str(SHOTS / "web-gan.png"))


def test_the_words_card_shows_the_served_nearest_words_and_their_map(
    browser, bundled_server: RunningServer
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    card = _open_card(browser, bundled_server, "words-card")
    _wait(browser, lambda d: card.get_attribute("data-word") == "monday")  # on opening
    with Client(bundled_server.url) as client:
        expected = [n.word for n in client.similar("integer", k=10)]
    box = browser.find_element(By.ID, "words-text")
    box.clear()
    box.send_keys("Integer", Keys.ENTER)
    _wait(browser, lambda d: card.get_attribute("data-word") == "integer")
    assert card.get_attribute("data-neighbours").split(",") == expected
    chips = [chip.text.split()[0] for chip in card.find_elements(By.CSS_SELECTOR, "#words-near li")]
    assert chips == expected
    # The map: the word and its ten neighbours drawn (dark ink on white).
    ink = browser.execute_script(
        "const c = document.getElementById('words-map');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 2] < 200) n++; return n"
    )
    assert ink > 200
    card.screenshot(str(SHOTS / "web-words.png"))
    box.clear()
    box.send_keys("zzqx", Keys.ENTER)
    _wait(browser, lambda d: card.get_attribute("data-word") == "zzqx")
    meta = browser.find_element(By.ID, "words-meta").text
    assert meta.startswith("'zzqx' is not in the vocabulary"), meta


def test_the_house_number_card_reads_a_picture_and_draws_its_digits(
    browser, bundled_server: RunningServer, tmp_path: Path
) -> None:
    """One Vision `read` call to the read_number pipeline; the digits' boxes drawn."""
    from selenium.webdriver.common.by import By

    card = _open_card(browser, bundled_server, "house-card")
    sample = ROOT / "docs" / "images" / "house.png"
    with Client(bundled_server.url) as client:
        expected = client.read(str(sample))
    assert expected.text == "7453"  # the sample is a held-out house number read right
    _wait(browser, lambda d: d.find_element(By.ID, "house").get_attribute("data-characters"))
    assert browser.find_element(By.ID, "house-text").text == expected.text
    chips = [c.text.split()[0] for c in card.find_elements(By.CSS_SELECTOR, "#house-digits li")]
    assert chips == list(expected.text)
    card.screenshot(str(SHOTS / "web-read.png"))
    # A picture of its own size (twice the sample's) uploaded: read the same, boxes scaled.
    bigger = tmp_path / "bigger.png"
    with Image.open(sample) as picture:
        picture.resize((640, 640)).save(bigger)
    browser.execute_script("document.getElementById('house').dataset.characters = ''")
    browser.find_element(By.ID, "house-file").send_keys(str(bigger))
    house = browser.find_element(By.ID, "house")
    drawn = _wait(browser, lambda d: house.get_attribute("data-characters"))
    assert int(drawn) == len(expected.text)
    assert browser.find_element(By.ID, "house-text").text == expected.text
    assert browser.find_element(By.ID, "house").get_attribute("width") == "640"
