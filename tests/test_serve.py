"""capstone.web.app through Flask's test client: every route, and every kind of bad input.

The model is the tiny one of serve_support: pictures of coloured scenes -> scene captions.
"""

import argparse
import base64
import dataclasses
import io
import json
import os
import re
import struct
import zlib

import cv2
import numpy as np
import pytest

from capstone.captions import START
from capstone.errors import CapstoneError
from capstone.web.search_index import INDEX_FILE, load_or_build
from capstone.web.app import create_app
from capstone.web.captioner import Captioner, check_image_header, model_id
from capstone.web.cli import add_arguments as add_serve_arguments
from capstone.web.cli import run as run_serve
from http_fixture import FileServer
from serve_support import SCENES, encode_file, load_model, scene_picture, trained_run_dir, write_scene_folder
from synthetic import scene_captions

MAX_UPLOAD = 200_000


@pytest.fixture(scope="module")
def captioner():
    return Captioner(load_model(), beam_size=3, max_len=20, max_pixels=1_000_000)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    folder = root / "photos"
    write_scene_folder(str(folder), SCENES)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "secret.png").write_bytes(encode_file(scene_picture("red", "circle")))
    os.symlink(root / "secret.png", folder / "link.png")  # leads out of the folder: must never be served
    return folder


@pytest.fixture(scope="module")
def index(captioner, photos):
    return load_or_build(str(photos), captioner.captions_for_file, model_id(trained_run_dir(), beam=3, max_len=20),
                         log=lambda _: None)


@pytest.fixture(scope="module")
def client(captioner, index):
    app = create_app(captioner, index, max_upload_bytes=MAX_UPLOAD)
    return app.test_client()


def picture_file(colour, shape, extension=".png", seed=1):
    return encode_file(scene_picture(colour, shape, rng=np.random.default_rng(seed)), extension)


def upload(data, name="photo.png"):
    return {"image": (io.BytesIO(data), name)}


def hit_names(html):
    """Image names of a search page's results, in order."""
    return re.findall(r'<span class="name">([^<]+)</span>', html)


def png_header_only(width, height):
    """A PNG whose header claims width x height pixels (a "decompression bomb" in 60 bytes)."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(b"\0" * 16))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


# -- captions ------------------------------------------------------------------------------------


def test_caption_page_form_and_security_headers(client):
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in html and 'name="image"' in html and 'name="url"' in html
    assert "<script" not in html and 'href="/search"' in html
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    css = client.get("/static/style.css")
    assert css.status_code == 200 and b"font-family" in css.data


@pytest.mark.parametrize("colour, shape, extension", [("red", "circle", ".png"), ("blue", "triangle", ".jpg"),
                                                      ("yellow", "square", ".bmp")])
def test_api_caption_of_an_upload(client, captioner, colour, shape, extension):
    data = picture_file(colour, shape, extension)
    answer = client.post("/api/caption", data=upload(data, "photo" + extension))
    assert answer.status_code == 200, answer.get_json()
    result = answer.get_json()
    assert result["caption"] in scene_captions(colour, shape)
    beams = result["beam_captions"]
    assert len(beams) == 3 and beams[0]["caption"] in scene_captions(colour, shape)
    assert [b["score"] for b in beams] == sorted((b["score"] for b in beams), reverse=True)
    words = result["next_words"]
    assert len(words) == 5 and {"#PAD#", START}.isdisjoint(w["word"] for w in words)
    probabilities = [w["probability"] for w in words]
    assert probabilities == sorted(probabilities, reverse=True) and 0.9 < sum(probabilities) <= 1.0 + 1e-6
    assert words[0]["word"] in {"a", "one", "the", "there"}
    # the same numbers as the model run directly from pixels (encoder + one step, no shortcut)
    pixels = captioner.pixels(data)
    model = captioner.model
    state = model.initial_state(images=pixels[None])
    probs, _ = model.step([model.vocab[START]], state)
    assert words[0]["probability"] == pytest.approx(float(probs[0, model.vocab[words[0]["word"]]]), rel=1e-4)
    assert result["caption"] == model.captions(images=pixels[None])[0]


def test_caption_page_shows_the_image_and_its_captions(client):
    page = client.post("/", data=upload(picture_file("green", "square")))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    caption = html.split('id="caption">', 1)[1].split("</p>", 1)[0]
    assert caption in scene_captions("green", "square")
    assert html.count('class="beam-caption"') == 3 and html.count('class="word"') == 5
    preview = html.split('src="data:image/jpeg;base64,', 1)[1].split('"', 1)[0]
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(preview), np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (16, 16, 3)  # the centre crop the model saw, re-encoded by the server


def test_bad_uploads_are_clear_400s(client):
    cases = [  # (file name and bytes, or None for no file field; what the message must say)
        (None, "send an image file"),
        (("empty.png", b""), "empty.png: the file is empty (0 bytes)"),
        (("notes.txt", b"hello, I am a text file\n"), "notes.txt: not an image"),
        (("x.svg", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"), "not an image"),
        (("cut.jpg", picture_file("red", "circle", ".jpg")[:-50]), "cut.jpg: truncated JPEG"),
        (("cut.png", picture_file("red", "circle")[:300]), "cut.png"),
        (("bomb.png", png_header_only(2000, 1000)), "bomb.png: 2000 x 1000 is more than the limit of 1,000,000 pixels"),
        (("huge.png", png_header_only(100_000, 100_000)), "huge.png: more than the limit of 1,000,000 pixels"),
    ]
    for file, message in cases:
        answer = client.post("/api/caption", data=upload(file[1], file[0]) if file else {})
        assert answer.status_code == 400, (message, answer.get_json())
        assert message in answer.get_json()["error"]
        page = client.post("/", data=upload(file[1], file[0]) if file else {})
        assert page.status_code == 400 and message.replace("'", "&#39;") in page.get_data(as_text=True)
    for body, message in (("[1, 2]", 'expected JSON {"url"'), ('{"url": 7}', 'expected JSON {"url"'),
                          ("{broken", 'expected JSON {"url"')):
        answer = client.post("/api/caption", data=body, content_type="application/json")
        assert answer.status_code == 400 and message in answer.get_json()["error"]


def test_check_image_header_refuses_before_decoding():
    check_image_header(picture_file("red", "circle"), "ok.png", max_pixels=64 * 64)
    with pytest.raises(CapstoneError, match="bomb.png: 8000 x 6000 is more than the limit of 40,000,000 pixels"):
        check_image_header(png_header_only(8000, 6000), "bomb.png", max_pixels=40_000_000)
    with pytest.raises(CapstoneError, match="bomb.png: more than the limit of 40,000,000 pixels"):
        check_image_header(png_header_only(100_000, 100_000), "bomb.png", max_pixels=40_000_000)


def test_uploads_over_the_size_limit_are_413(client):
    big = os.urandom(MAX_UPLOAD + 1)
    answer = client.post("/api/caption", data=upload(big, "big.png"))
    assert answer.status_code == 413
    assert answer.get_json() == {"error": "upload: larger than the limit of 0.190735 MB"}
    page = client.post("/", data=upload(big, "big.png"))
    assert page.status_code == 413 and "larger than the limit" in page.get_data(as_text=True)
    big_json = json.dumps({"url": "http://example.com/" + "a" * MAX_UPLOAD})
    assert client.post("/api/caption", data=big_json, content_type="application/json").status_code == 413


def test_urls_on_private_addresses_are_refused(client):
    with FileServer({"/a.png": picture_file("red", "circle")}) as server:
        for url in (server.url + "/a.png", "http://localhost:1/a.png", "file:///etc/passwd", "gopher://x/"):
            answer = client.post("/api/caption", json={"url": url})
            assert answer.status_code == 400, url
            assert ("private or local address; refused" in answer.get_json()["error"]
                    or "only http:// and https://" in answer.get_json()["error"])
        page = client.post("/", data={"url": server.url + "/a.png"})
        assert page.status_code == 400 and "refused" in page.get_data(as_text=True)
        assert server.requests == []  # nothing was ever fetched


def test_urls_are_fetched_when_private_addresses_are_allowed(captioner, index):
    client = create_app(captioner, index, max_upload_bytes=MAX_UPLOAD, allow_private_urls=True).test_client()
    files = {"/a.png": picture_file("blue", "circle"), "/page.html": b"<html>login</html>",
             "/big.png": os.urandom(MAX_UPLOAD + 10)}
    with FileServer(files) as server:
        answer = client.post("/api/caption", json={"url": server.url + "/a.png"})
        assert answer.status_code == 200 and answer.get_json()["caption"] in scene_captions("blue", "circle")
        page = client.post("/", data={"url": server.url + "/a.png"})
        assert page.status_code == 200 and 'id="caption"' in page.get_data(as_text=True)
        for path, status, message in (("/page.html", 400, "not an image"), ("/missing.png", 502, "HTTP 404"),
                                      ("/big.png", 413, "more than the limit")):
            answer = client.post("/api/caption", json={"url": server.url + path})
            assert answer.status_code == status and message in answer.get_json()["error"], path


def test_wrong_methods_and_unknown_api_routes_answer_json(client):
    answer = client.get("/api/caption")
    assert answer.status_code == 405 and "error" in answer.get_json()
    assert client.get("/api/nothing").get_json()["error"]


def test_an_unexpected_failure_is_a_500_without_a_traceback(captioner, monkeypatch):
    client = create_app(captioner).test_client()
    monkeypatch.setattr(captioner, "describe", lambda pixels: 1 / 0)
    answer = client.post("/api/caption", data=upload(picture_file("red", "circle")))
    assert answer.status_code == 500
    assert answer.get_json() == {"error": "internal error: the server could not caption this image"}
    page = client.post("/", data=upload(picture_file("red", "circle")))
    assert page.status_code == 500 and "internal error" in page.get_data(as_text=True)
    assert "ZeroDivisionError" not in page.get_data(as_text=True)


# -- search --------------------------------------------------------------------------------------


def test_index_holds_every_picture_and_remembers_the_broken_one(index, photos, captioner):
    assert sorted(image.name for image in index.images) == sorted(f"{c}_{s}.png" for c, s in SCENES)
    assert [entry["name"] for entry in index.skipped] == ["broken.jpg"]
    saved = json.loads((photos / INDEX_FILE).read_text())
    assert len(saved["images"]) == 12 and saved["images"][0]["captions"][0] == index.images[0].captions[0]
    calls = []

    def counting(path):
        calls.append(path)
        return captioner.captions_for_file(path)
    same_id = model_id(trained_run_dir(), beam=3, max_len=20)
    assert len(load_or_build(str(photos), counting, same_id, log=lambda _: None)) == 12 and calls == []
    assert model_id(trained_run_dir(), beam=2, max_len=20) != same_id


def test_api_search_by_words(client):
    answer = client.get("/api/search", query_string={"q": "a red circle", "k": 3})
    assert answer.status_code == 200
    results = answer.get_json()["results"]
    assert len(results) == 3 and results[0]["name"] == "red_circle.png"
    assert results[0]["url"] == "/images/red_circle.png" and results[0]["caption"] in scene_captions("red", "circle")
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    everything = client.get("/api/search", query_string={"q": "triangle"}).get_json()["results"]
    assert sorted(r["name"] for r in everything) == [
        "blue_triangle.png", "green_triangle.png", "red_triangle.png", "yellow_triangle.png"]
    zebra = client.get("/api/search", query_string={"q": "zebra"}).get_json()
    assert zebra["results"] == [] and zebra["message"] == "no match: no caption of the 12 images has 'zebra'"
    common = client.get("/api/search", query_string={"q": "there is a"}).get_json()  # in every caption
    assert common["results"] == [] and "too common to search by" in common["message"]
    red = client.get("/api/search", query_string={"q": "red zebra"}).get_json()
    assert "message" not in red and {r["score"] for r in red["results"]} == {0.5}
    assert all(r["matched"] == ["red"] for r in red["results"]) and len(red["results"]) == 3
    for bad in ({"q": "x", "k": "0"}, {"q": "x", "k": "many"}, {"q": "x", "k": "1000"}, {"q": "x", "k": "²"},
                {"q": "x" * 600}):
        answer = client.get("/api/search", query_string=bad)
        assert answer.status_code == 400 and answer.get_json()["error"].startswith(("k:", "q:"))


def test_search_page_lists_thumbnails_and_escapes_the_query(client):
    html = client.get("/search", query_string={"q": "blue square"}).get_data(as_text=True)
    assert hit_names(html)[0] == "blue_square.png" and len(hit_names(html)) == 6  # 3 blue + 4 square - 1 both
    assert 'src="/images/blue_square.png"' in html and "Search 12 images" in html
    html = client.get("/search", query_string={"q": "<script>alert(1)</script> red"}).get_data(as_text=True)
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    html = client.get("/search", query_string={"q": "zebra"}).get_data(as_text=True)
    assert '<p id="no-hits">no match: no caption of the 12 images has &#39;zebra&#39;</p>' in html
    html = client.get("/search", query_string={"q": "blue"}).get_data(as_text=True)
    assert "matches blue\n        (100% of the query's words)" in html


def test_search_by_image(client):
    answer = client.post("/api/search?k=2", data=upload(picture_file("green", "triangle")))
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["caption"] in scene_captions("green", "triangle")
    assert [r["name"] for r in body["results"]][0] == "green_triangle.png" and len(body["results"]) == 2
    html = client.post("/search", data=upload(picture_file("yellow", "circle"))).get_data(as_text=True)
    assert hit_names(html)[0] == "yellow_circle.png" and 'id="caption"' in html
    assert client.post("/api/search", data=upload(b"not an image")).status_code == 400


def test_indexed_images_only(client, photos):
    answer = client.get("/images/red_circle.png")
    assert answer.status_code == 200 and answer.mimetype == "image/png"
    assert answer.data == (photos / "red_circle.png").read_bytes()
    for path in ("/images/link.png", "/images/../secret.png", "/images/%2e%2e/secret.png", "/images/broken.jpg",
                 "/images/" + INDEX_FILE, "/images//etc/passwd", "/images/%2Fetc%2Fpasswd",
                 "/images/photos/red_circle.png",
                 "/images/red_circle.png%00.txt", "/images/"):
        assert client.get(path, follow_redirects=True).status_code == 404, path


def test_a_shapes_model_says_so_on_every_page(captioner, index, monkeypatch):
    assert 'id="trained-on"' not in create_app(captioner, index).test_client().get("/").get_data(as_text=True)
    run = dataclasses.replace(captioner.model.run, data={"source": "shapes", "captions": [], "images": 300})
    monkeypatch.setattr(captioner.model, "run", run)
    client = create_app(captioner, index).test_client()
    for page in (client.get("/"), client.get("/search?q=red"), client.post("/", data=upload(b"not an image"))):
        html = page.get_data(as_text=True)
        assert html.count('id="trained-on"') == 1
        assert "was trained on 300 synthetic pictures of coloured shapes" in html


def test_without_an_index_search_is_404(captioner):
    client = create_app(captioner).test_client()
    assert client.get("/api/search?q=red").status_code == 404
    assert "no image index" in client.get("/api/search?q=red").get_json()["error"]
    page = client.get("/search?q=red")
    assert page.status_code == 404 and "--index IMAGE_DIR" in page.get_data(as_text=True)
    assert client.get("/images/red_circle.png").status_code == 404
    assert 'href="/search"' not in client.get("/").get_data(as_text=True)


# -- command line --------------------------------------------------------------------------------


def test_run_serve_builds_the_index_and_runs_threaded(monkeypatch, photos, tmp_path, captioner):
    from capstone import final_model

    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args([trained_run_dir(), "--index", str(photos), "--index-file", str(tmp_path / "i.json"),
                              "--port", "8123", "--beam", "2", "--dev"])
    assert (args.host, args.allow_private_urls, args.max_upload_mb) == ("127.0.0.1", False, 10)
    loaded, ran = [], []
    monkeypatch.setattr(final_model.FinalModel, "load",
                        classmethod(lambda cls, path, with_encoder=False, **_: loaded.append(with_encoder) or load_model()))
    monkeypatch.setattr("flask.Flask.run", lambda app, **kwargs: ran.append((app, kwargs)))
    run_serve(args)
    assert loaded == [True]
    (app, kwargs), = ran
    assert kwargs == {"host": "127.0.0.1", "port": 8123, "threaded": True}
    assert app.config["MAX_CONTENT_LENGTH"] == 10 * 2 ** 20
    saved = json.loads((tmp_path / "i.json").read_text())
    assert len(saved["images"]) == 12 and all(1 <= len(e["captions"]) <= 3 for e in saved["images"])
    with pytest.raises(CapstoneError, match="--beam"):
        run_serve(parser.parse_args([trained_run_dir(), "--beam", "0"]))


# -- limits (issue 17) ---------------------------------------------------------------------------


def test_a_huge_picture_is_refused_from_its_header_before_the_rest_is_read(captioner, monkeypatch):
    from capstone.web import captioner as captioner_module

    decoded = []
    monkeypatch.setattr(captioner_module, "image_for_model", lambda *a, **k: decoded.append(1))
    client = create_app(captioner, max_upload_bytes=2_000_000).test_client()
    bomb = png_header_only(6000, 6000) + os.urandom(400_000)  # more than the header bytes read first
    answer = client.post("/api/caption", data=upload(bomb))
    assert answer.status_code == 400 and "6000 x 6000 is more than the limit" in answer.get_json()["error"]
    assert decoded == []


def test_decoder_errors_are_400s(captioner, monkeypatch):
    from capstone.web import captioner as captioner_module

    def broken(*args, **kwargs):
        raise cv2.error("OpenCV(5.0) imgcodecs: can't decode")
    monkeypatch.setattr(captioner_module, "image_for_model", broken)
    answer = create_app(captioner).test_client().post("/api/caption", data=upload(picture_file("red", "circle")))
    assert answer.status_code == 400 and "photo.png: not a decodable image" in answer.get_json()["error"]


def test_busy_is_503_with_retry_after(monkeypatch):
    slow = Captioner(load_model(), max_in_flight=1, queue_seconds=0.05)
    client = create_app(slow).test_client()
    with slow.slot():  # every slot taken
        answer = client.post("/api/caption", data=upload(picture_file("red", "circle")))
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "2"
    assert "busy" in answer.get_json()["error"]
    assert client.post("/api/caption", data=upload(picture_file("red", "circle"))).status_code == 200
    assert client.get("/healthz").get_json() == {"status": "ok"}
