"""End to end in a real browser: headless Chromium uploads a photo and reads its caption off the page.

Needs Debian's ``chromium`` and ``chromium-driver`` and pip's ``selenium``; skips without them.
Selenium is given the system chromedriver, so it never tries to download a browser or driver.
"""

import os
import shutil

import numpy as np
import pytest

from capstone.web.search_index import load_or_build
from capstone.web.app import create_app
from capstone.web.captioner import Captioner, model_id
from serve_support import (SCENES, encode_file, load_model, running_server, scene_picture, trained_run_dir,
                           write_scene_folder)
from synthetic import scene_captions

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look for downloads
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(20)  # find_element waits for the next page to arrive
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """(base URL, folder of uploadable files) of a real server with a search index."""
    root = tmp_path_factory.mktemp("browser")
    write_scene_folder(str(root / "photos"), SCENES)
    captioner = Captioner(load_model())
    index = load_or_build(str(root / "photos"), captioner.captions_for_file,
                          model_id(trained_run_dir(), beam=3, max_len=20), log=lambda _: None)
    uploads = root / "uploads"
    uploads.mkdir()
    (uploads / "green_circle.jpg").write_bytes(encode_file(scene_picture("green", "circle", size=200,
                                                                         rng=np.random.default_rng(5)), ".jpg"))
    (uploads / "notes.txt").write_text("not a picture")
    with running_server(create_app(captioner, index)) as (host, port):
        yield f"http://{host}:{port}", uploads


def click_and_wait_for_next_page(browser, element_id):
    from selenium.webdriver.support.expected_conditions import staleness_of
    from selenium.webdriver.support.wait import WebDriverWait

    old_page = browser.find_element("tag name", "html")
    browser.find_element("id", element_id).click()
    WebDriverWait(browser, 30).until(staleness_of(old_page))  # never read the previous page's results


def upload_and_submit(browser, path):
    browser.find_element("id", "image").send_keys(str(path))
    click_and_wait_for_next_page(browser, "submit")


def test_upload_a_photo_and_read_its_caption(browser, site):
    base, uploads = site
    browser.get(base + "/")
    assert "Caption an image" in browser.find_element("tag name", "h1").text
    upload_and_submit(browser, uploads / "green_circle.jpg")
    caption = browser.find_element("id", "caption").text
    assert caption in scene_captions("green", "circle")
    beams = [element.text for element in browser.find_elements("class name", "beam-caption")]
    assert len(beams) == 3 and beams[0] in scene_captions("green", "circle")
    first_words = [element.text for element in browser.find_elements("css selector", "#next-words .word")]
    assert len(first_words) == 5 and first_words[0] in {"a", "one", "the", "there"}
    preview = browser.find_element("id", "preview")
    assert preview.get_property("naturalWidth") == 16  # the data: URI image decoded in the browser


def test_a_non_image_shows_a_message(browser, site):
    base, uploads = site
    browser.get(base + "/")
    upload_and_submit(browser, uploads / "notes.txt")
    assert "notes.txt: not an image" in browser.find_element("id", "error").text


def test_search_by_words_and_by_image_shows_thumbnails(browser, site):
    base, uploads = site
    browser.get(base + "/search")
    browser.find_element("id", "q").send_keys("a blue square")
    click_and_wait_for_next_page(browser, "search")
    names = [element.text for element in browser.find_elements("css selector", "#hits .name")]
    assert names[0] == "blue_square.png"
    thumbnail = browser.find_element("css selector", "#hits img")
    assert thumbnail.get_property("naturalWidth") == 64  # served from /images/ and displayed
    upload_and_submit(browser, uploads / "green_circle.jpg")
    names = [element.text for element in browser.find_elements("css selector", "#hits .name")]
    assert names[0] == "green_circle.png"
