"""``export``: the SavedModel runs in plain TensorFlow alone and captions as ``caption`` does.

The model is serve_support's tiny one (a 16 x 16 pooling "CNN" + a decoder trained on scene
pictures), so exporting takes seconds. The loaded SavedModel runs in a subprocess whose working
directory is a temporary folder and whose PYTHONPATH is empty: it cannot import this package.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from capstone.__main__ import main
from capstone.deploy import export as export_module
from capstone.deploy.export import export
from capstone.encoders.images import image_for_model
from capstone.errors import CapstoneError
from serve_support import IMAGE_SIZE, SCENES, encode_file, load_model, scene_picture, tiny_encoder, trained_run_dir
from synthetic import scene_captions

SCRIPT = textwrap.dedent("""
    import importlib.util, json, sys
    import tensorflow as tf
    assert importlib.util.find_spec("capstone") is None, "the exported model must not need the package"
    request = json.load(open("request.json"))
    model = tf.saved_model.load(request["model"], tags=["serve"])
    files = tf.constant([open(name, "rb").read() for name in request["files"]])
    greedy = model.signatures["serving_default"](image_bytes=files)["caption"].numpy()
    beam = model.signatures["beam"](image_bytes=files[:4])
    embedded = model.signatures["embeddings"](img_embeds=tf.constant(request["embeddings"], tf.float32))
    json.dump({"greedy": [c.decode() for c in greedy],
               "beam": [[c.decode() for c in row] for row in beam["captions"].numpy()],
               "scores": beam["scores"].numpy().tolist(),
               "from_embeddings": [c.decode() for c in embedded["caption"].numpy()],
               "beam_from_embeddings": [[c.decode() for c in row] for row in embedded["beam_captions"].numpy()],
               "beam_scores_from_embeddings": embedded["beam_scores"].numpy().tolist()}, sys.stdout)
""")


def run_saved_model(model_dir, files, embeddings, tmp_path):
    """Captions from the SavedModel in a fresh interpreter that cannot import capstone."""
    (tmp_path / "request.json").write_text(json.dumps(
        {"model": str(model_dir), "files": [str(f) for f in files], "embeddings": embeddings.tolist()}))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model"
    written = export(trained_run_dir(), str(out), encoder=tiny_encoder())
    assert "saved_model.pb" in written and any(name.startswith("variables/") for name in written)
    return out


def scene_files(folder, count=60):
    """``count`` scene pictures of several sizes and aspect ratios, as PNG and JPEG files."""
    paths = []
    for i in range(count):
        colour, shape = SCENES[i % len(SCENES)]
        picture = scene_picture(colour, shape, size=[64, 97, 150][i % 3], rng=np.random.default_rng(i))
        if i % 4 == 1:
            picture = np.ascontiguousarray(picture[:, : picture.shape[1] * 2 // 3])  # portrait, odd crops
        path = folder / f"scene{i}{'.jpg' if i % 2 else '.png'}"
        path.write_bytes(encode_file(picture, path.suffix))
        paths.append(path)
    return paths


def test_saved_model_captions_like_caption_in_a_process_without_the_package(exported, tmp_path):
    files = scene_files(tmp_path)
    model = load_model()
    pixels = np.stack([image_for_model(path.read_bytes(), IMAGE_SIZE) for path in files])  # what `caption` does
    expected = model.captions(images=pixels)
    embeddings = model.session.run(model.img_embeds, {model.input_images: pixels[:5]})
    got = run_saved_model(exported, files, embeddings, tmp_path)

    same = np.mean([a == b for a, b in zip(got["greedy"], expected)])
    print(f"\nSavedModel vs caption on {len(files)} scene files (PNG + JPEG): {same:.1%} identical")
    assert same >= 0.95
    squares = [i for i in range(len(files)) if i % 4 != 1]  # a portrait crop may cut the scene's block off
    assert all(got["greedy"][i] in scene_captions(*SCENES[i % len(SCENES)]) for i in squares)
    assert got["from_embeddings"] == expected[:5]  # no image decoding: exactly the same
    beams = model.beam_captions(images=pixels[:4])  # the pixels differ a little (decoders): the scores too
    assert [row[0] for row in got["beam"]] == [found[0][0] for found in beams]
    np.testing.assert_allclose(got["scores"], [[score for _, score in found] for found in beams], atol=0.02)
    beams = model.beam_captions(embeddings=embeddings)  # the same inputs: the same numbers
    assert got["beam_from_embeddings"] == [[text for text, _ in found] for found in beams]
    np.testing.assert_allclose(got["beam_scores_from_embeddings"], [[s for _, s in found] for found in beams],
                               rtol=1e-6)


def test_flickr_photos_caption_alike_through_both_jpeg_decoders(exported, flickr_dir, tmp_path):
    """Real JPEGs (TensorFlow's libjpeg vs OpenCV's) through the tiny model: the agreement rate."""
    files = sorted((flickr_dir / "images").glob("*.jpg"))[:60]
    model = load_model()
    pixels = np.stack([image_for_model(path.read_bytes(), IMAGE_SIZE) for path in files])
    expected = model.captions(images=pixels)
    got = run_saved_model(exported, files, pixels[:1, 0, 0, :1] * 0 + np.zeros((1, 32)), tmp_path)
    same = np.mean([a == b for a, b in zip(got["greedy"], expected)])
    print(f"\nSavedModel vs caption on {len(files)} Flickr8k JPEGs: {same:.1%} identical")
    assert same >= 0.95


def test_caption_strings_stop_at_end_and_drop_specials():
    import tensorflow as tf

    words = ["#END#", "#PAD#", "#START#", "#UNK#", "a", "dog"]
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        text = export_module.caption_strings(tf.constant([[4, 3, 5, 0, 4], [5, 5, -1, -1, -1], [0, 4, 4, 4, 4]]),
                                             tf.constant([5, 2, 5]), words)
        assert [t.decode() for t in session.run(text)] == ["a dog", "dog dog", ""]


def test_export_refuses_an_existing_folder_and_never_leaves_half_of_one(tmp_path, monkeypatch):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(CapstoneError, match="already exists.*--force"):
        export(trained_run_dir(), str(out), encoder=tiny_encoder())

    def broken(model, path):
        os.makedirs(path)
        (open(os.path.join(path, "saved_model.pb"), "wb")).close()
        raise CapstoneError("disk full")
    monkeypatch.setattr(export_module, "write_saved_model", broken)
    with pytest.raises(CapstoneError, match="disk full"):
        export(trained_run_dir(), str(out), force=True, encoder=tiny_encoder())
    assert sorted(os.listdir(out)) == ["keep.txt"]          # the old folder is untouched
    with pytest.raises(CapstoneError, match="disk full"):
        export(trained_run_dir(), str(tmp_path / "new"), encoder=tiny_encoder())
    assert sorted(os.listdir(tmp_path)) == ["model"]         # nothing half-written, no temporary folder left
    monkeypatch.undo()
    written = export(trained_run_dir(), str(out), force=True, encoder=tiny_encoder())
    assert sorted(os.listdir(out)) == sorted({name.split("/")[0] for name in written}) and "keep.txt" not in written


def test_export_command_errors_are_one_line(tmp_path, capsys):
    from capstone.config import ModelConfig, TrainingConfig
    from capstone.support import run_dir as runs

    run = tmp_path / "run"
    runs.save_run(runs.Run(str(run), {"#END#": 0, "#PAD#": 1, "#START#": 2, "#UNK#": 3, "a": 4},
                           ModelConfig(), TrainingConfig(), encoder="efficientnet_lite0"))
    assert main(["export", str(run), "--out", str(tmp_path / "out")]) == 2
    assert "no checkpoint found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "run directory does not exist" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    assert main(["export", trained_run_dir(), "--out", str(tmp_path / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_efficientnet_lite0_export_on_flickr_photos(flickr_dir, tmp_path):
    """The real encoder (224 x 224, EfficientNet-Lite0) in front of a decoder with random weights,
    which is harsher than a trained one: its word probabilities are close, so small pixel changes show."""
    from capstone.config import ModelConfig
    from capstone.encoders import frozen_encoder
    from capstone.encoders.images import load_images_for_model
    from capstone.final_model import FinalModel
    from capstone.support import run_dir as runs
    from synthetic import untrained_run

    run = untrained_run(tmp_path / "run", 300, ModelConfig(img_embed_size=1280, img_embed_bottleneck=64,
                                                          word_embed_size=64, lstm_units=128, logit_bottleneck=64))
    encoder = frozen_encoder("efficientnet_lite0")
    export(run, str(tmp_path / "model"), encoder=encoder)
    files = sorted((flickr_dir / "images").glob("*.jpg"))[:60]
    model = FinalModel(runs.load_run(run), encoder=encoder)
    expected = model.captions(images=load_images_for_model([str(f) for f in files], 224))
    got = run_saved_model(tmp_path / "model", files, np.zeros((1, 1280), np.float32), tmp_path)
    same = np.mean([a == b for a, b in zip(got["greedy"], expected)])
    print(f"\nefficientnet_lite0 SavedModel vs caption on {len(files)} Flickr8k JPEGs: {same:.1%} identical")
    assert same >= 0.95


def test_in_graph_pixels_are_opencvs_pixels(tmp_path, flickr_dir):
    """Decode + crop + resize in TensorFlow gives the very pixels of image_for_model (OpenCV)."""
    import tensorflow as tf

    from capstone.deploy.image_ops import pixels_for_model

    photos = [p.read_bytes() for p in sorted((flickr_dir / "images").glob("*.jpg"))[:10]]
    big = encode_file(np.random.default_rng(3).integers(0, 256, (700, 1100, 3), dtype=np.uint8), ".png")
    files = [p.read_bytes() for p in scene_files(tmp_path, 8)] + photos + [big]
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        buf = tf.compat.v1.placeholder(tf.string, [])
        for size in (16, 224, 299):
            pixels = pixels_for_model(buf, size)
            for data in files:
                np.testing.assert_array_equal(session.run(pixels, {buf: data}), image_for_model(data, size))
