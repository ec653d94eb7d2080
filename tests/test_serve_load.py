"""A real caption server on 127.0.0.1 under load: 200 requests, 8 at a time, one shared model.

Every answer must be 200 and identical to the answer the same image got when requests came one
at a time; a model that kept its LSTM state in shared variables would mix captions up here.
"""

import concurrent.futures
import http.client
import json
import os
import time
import uuid

import numpy as np
import pytest

from capstone.web.app import create_app
from capstone.web.captioner import Captioner
from serve_support import SCENES, encode_file, load_model, running_server, scene_picture
from synthetic import scene_captions

N_REQUESTS = 200
CONCURRENCY = 8


def multipart(field, file_name, data):
    """(body, content type) of a multipart/form-data request with one file field."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file_name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_image(address, data, path="/api/caption"):
    """(status, parsed JSON body, seconds) of one upload."""
    body, content_type = multipart("image", "photo.png", data)
    started = time.perf_counter()
    connection = http.client.HTTPConnection(*address, timeout=60)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    return response.status, json.loads(payload), time.perf_counter() - started


@pytest.fixture(scope="module")
def app():
    return create_app(Captioner(load_model()), max_upload_bytes=100_000)


def test_concurrent_captions_equal_single_threaded_ones(app):
    pictures = [encode_file(scene_picture(colour, shape, rng=np.random.default_rng(i)))
                for i, (colour, shape) in enumerate(SCENES)]
    with running_server(app) as address:
        alone = []
        for picture in pictures:  # one request at a time: the reference answers
            status, body, _ = post_image(address, picture)
            assert status == 200, body
            alone.append(body)
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
            answers = list(pool.map(lambda i: (i, post_image(address, pictures[i % len(pictures)])),
                                    range(N_REQUESTS)))
        elapsed = time.perf_counter() - started
    errors = [(i, status, body) for i, (status, body, _) in answers if status != 200]
    assert errors == []
    for i, (_, body, _) in answers:
        expected = alone[i % len(pictures)]
        assert body["caption"] == expected["caption"]
        assert [b["caption"] for b in body["beam_captions"]] == [b["caption"] for b in expected["beam_captions"]]
        np.testing.assert_allclose([b["score"] for b in body["beam_captions"]],
                                   [b["score"] for b in expected["beam_captions"]], rtol=1e-5)
        assert [w["word"] for w in body["next_words"]] == [w["word"] for w in expected["next_words"]]
    # and the answers are right, not only consistent
    assert all(alone[i]["caption"] in scene_captions(*scene) for i, scene in enumerate(SCENES))
    latencies = np.array([seconds for _, (_, _, seconds) in answers])
    p95 = float(np.percentile(latencies, 95))
    print(f"\nload: {N_REQUESTS} requests at concurrency {CONCURRENCY}: {N_REQUESTS / elapsed:.1f} requests/s, "
          f"p50 {np.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms on {os.cpu_count()} cores")
    assert p95 < 10.0  # generous: a shared 2-core machine; the point is no errors and no mixed-up captions


def test_real_server_answers_413_and_400_without_dropping_the_connection(app):
    with running_server(app) as address:
        status, body, _ = post_image(address, os.urandom(150_000))
        assert status == 413 and "larger than the limit" in body["error"]
        status, body, _ = post_image(address, b"GIF89a not really")
        assert status == 400 and "not an image" in body["error"]
        status, body, _ = post_image(address, encode_file(scene_picture("red", "square")))
        assert status == 200 and body["caption"] in scene_captions("red", "square")


@pytest.mark.slow
def test_real_efficientnet_lite0_service_on_flickr_photos(flickr_dir, tmp_path):
    """The path ``serve`` takes: a run trained on EfficientNet-Lite0 embeddings, loaded with its encoder."""
    import shutil

    from capstone.data.caption_files import load_captions
    from capstone.config import ModelConfig, TrainingConfig
    from capstone.encoders import frozen_encoder
    from capstone.final_model import FinalModel
    from capstone.encoders.images import load_images_for_model
    from capstone.web.search_index import load_or_build
    from capstone.web.captioner import model_id
    from capstone.training import train
    from serve_support import embed_pixels

    captions = load_captions(str(flickr_dir / "captions.csv"))
    names = sorted(captions)[:120]
    embeds = embed_pixels(frozen_encoder("efficientnet_lite0"),
                          load_images_for_model([str(flickr_dir / "images" / n) for n in names], 224))
    run = str(tmp_path / "run")
    train(run, embeds[:100], [captions[n] for n in names[:100]], embeds[100:], [captions[n] for n in names[100:]],
          ModelConfig(img_embed_size=1280, img_embed_bottleneck=64, word_embed_size=64, lstm_units=128,
                      logit_bottleneck=64),
          TrainingConfig(batch_size=32, n_epochs=3, n_batches_per_epoch=60, n_validation_batches=2, min_count=3),
          encoder="efficientnet_lite0", progress=False, log=lambda _: None)
    captioner = Captioner(FinalModel.load(run, with_encoder=True))
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in names[100:110]:
        shutil.copy(flickr_dir / "images" / name, folder / name)
    index = load_or_build(str(folder), captioner.captions_for_file, model_id(run, beam=3, max_len=20),
                          log=lambda _: None)
    assert len(index) == 10
    photos = [(folder / name).read_bytes() for name in names[100:110]]
    vocab = set(captioner.model.vocab)
    with running_server(create_app(captioner, index)) as address:
        alone = [post_image(address, photo)[1] for photo in photos]
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda i: post_image(address, photos[i % 10]), range(40)))
        elapsed = time.perf_counter() - started
    assert [status for status, _, _ in answers] == [200] * 40
    assert [body["caption"] for _, body, _ in answers] == [alone[i % 10]["caption"] for i in range(40)]
    for body in alone:
        assert body["caption"] and set(body["caption"].split()) <= vocab
    own = next(image for image in index.images if image.name == names[100])
    hits = index.search(list(own.captions))  # an image's own captions match it perfectly
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert names[100] in [hit.name for hit in hits if hit.score == pytest.approx(1.0, abs=1e-5)]
    assert alone[0]["caption"] == own.captions[0]  # the index and the API caption alike
    latencies = np.array([seconds for _, _, seconds in answers])
    print(f"\nefficientnet_lite0: 40 requests at concurrency 4: {40 / elapsed:.1f} requests/s, "
          f"p95 {np.percentile(latencies, 95) * 1000:.0f} ms; e.g. {names[100]}: {alone[0]['caption']!r}")
