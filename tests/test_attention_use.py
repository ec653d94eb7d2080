"""An attention run in use: caption --attention-plot, the web page's maps, evaluate, and clear errors."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from capstone.__main__ import main
from capstone.config import ModelConfig, TrainingConfig
from capstone.encoders import FrozenEncoder
from capstone.final_model import FinalModel
from capstone.training import train
from capstone.web.app import create_app
from capstone.web.captioner import Captioner
from serve_support import IMAGE_SIZE, SCENES, encode_file, scene_picture
from synthetic import scene_captions

GRID, DEPTH = 2, 8


def tiny_spatial_encoder():
    """FrozenEncoder with a feature grid: pixels [N, 16, 16, 3] -> features [N, 2, 2, 8] -> mean [N, 8]."""
    projection = np.random.default_rng(3).normal(size=(3, DEPTH)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [None, IMAGE_SIZE, IMAGE_SIZE, 3], name="images")
        pooled = tf.nn.avg_pool2d(images / 255.0 - 0.5, ksize=8, strides=8, padding="VALID")  # [N, 2, 2, 3]
        features = tf.identity(4.0 * tf.tensordot(pooled, tf.constant(projection), axes=1), name="features")
        tf.identity(tf.reduce_mean(features, axis=[1, 2]), name="embedding")
    return FrozenEncoder(graph.as_graph_def(), "images:0", "embedding:0", IMAGE_SIZE, DEPTH, "tiny_grid",
                         "features:0")


def grids(encoder, pictures):
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(encoder.graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        pixels = np.stack([np.asarray(Image.fromarray(p).resize((IMAGE_SIZE, IMAGE_SIZE)), np.float32)
                           for p in pictures])
        return session.run(encoder.features_name, {encoder.input_name: pixels})


@pytest.fixture(scope="module")
def attention_run(tmp_path_factory):
    encoder = tiny_spatial_encoder()
    rng = np.random.default_rng(0)
    scenes = [SCENES[i % len(SCENES)] for i in range(240)]
    features = grids(encoder, [scene_picture(*s, rng=rng) for s in scenes])
    captions = [scene_captions(*s) for s in scenes]
    path = str(tmp_path_factory.mktemp("attention_run"))
    train(path, features[:200], captions[:200], features[200:], captions[200:],
          ModelConfig(decoder="attention", img_embed_bottleneck=16, lstm_units=32, word_embed_size=16,
                      logit_bottleneck=16, attention_units=16),
          TrainingConfig(batch_size=32, n_epochs=3, n_batches_per_epoch=60, n_validation_batches=2, min_count=1,
                         learning_rate=0.01), encoder="efficientnet_lite0", progress=False, log=lambda _: None)
    return path, encoder


def test_the_web_page_and_api_show_where_each_word_looked(attention_run):
    path, encoder = attention_run
    model = FinalModel(FinalModel.load(path).run, encoder=encoder)
    client = create_app(Captioner(model)).test_client()
    picture = encode_file(scene_picture("red", "square", rng=np.random.default_rng(5)))
    answer = client.post("/api/caption", data={"image": (io.BytesIO(picture), "x.png")}).get_json()
    words = answer["caption"].split()
    assert [entry["word"] for entry in answer["attention"]] == words and words
    for entry in answer["attention"]:
        weights = np.asarray(entry["weights"])
        assert weights.shape == (GRID, GRID) and abs(weights.sum() - 1) < 1e-3 and (weights >= 0).all()
    page = client.post("/", data={"image": (io.BytesIO(picture), "x.png")}).get_data(as_text=True)
    assert 'id="attention"' in page and 'src="data:image/png;base64,' in page


def test_caption_attention_plot_writes_a_png_per_image(attention_run, tmp_path, monkeypatch, capsys):
    path, encoder = attention_run
    monkeypatch.setattr("capstone.encoders.frozen_encoder", lambda name, weights="imagenet": encoder)
    files = []
    for i, scene in enumerate([("blue", "circle"), ("green", "triangle")]):
        files.append(str(tmp_path / f"photo{i}.png"))
        with open(files[-1], "wb") as f:
            f.write(encode_file(scene_picture(*scene, rng=np.random.default_rng(i))))
    assert main(["caption", path, files[0], "--attention-plot", str(tmp_path / "one.png")]) == 0
    assert Image.open(tmp_path / "one.png").size[0] > 200  # a figure, not a thumbnail
    assert main(["caption", path, *files, "--attention-plot", str(tmp_path / "many.png"), "--beam", "2"]) == 0
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith("many_")) == ["many_photo0.png", "many_photo1.png"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(files[0] + "\t") and len(lines[0].split("\t")[1].split()) >= 2


def test_attention_plot_of_a_pooled_run_is_a_clear_error(tmp_path, capsys):
    from synthetic import untrained_run

    run = untrained_run(tmp_path / "pooled", 20, ModelConfig(img_embed_size=8))
    picture = tmp_path / "x.png"
    picture.write_bytes(encode_file(scene_picture("red", "circle")))
    assert main(["caption", run, str(picture), "--attention-plot", str(tmp_path / "a.png")]) == 2
    assert "holds a show_and_tell decoder, which looks at one pooled vector" in capsys.readouterr().err
