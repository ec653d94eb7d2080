"""Image encoders: Lite0 weights read without torch, frozen graphs equal to eager models, weights files."""

import os
import pickle
import time
import zipfile

import cv2
import numpy as np
import pytest
import skimage.data
import tensorflow as tf

from capstone import encoders
from capstone.encoders import cnn, efficientnet_lite
from capstone.encoders import frozen as frozen_module
from capstone.errors import CapstoneError
from capstone.encoders.torch_pickle import MAGIC_NUMBER, PROTOCOL_VERSION, read_state_dict
from http_fixture import FileServer

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {504, 967, 968}  # coffee mug, espresso, cup


def center_crop(image, size, crop_padding=32):
    """RGB uint8 [H, W, 3] -> float32 [size, size, 3], as the TF EfficientNet evaluation does:
    the central square of side size / (size + 32) * min(H, W), resized bicubically."""
    height, width = image.shape[:2]
    side = int(size / (size + crop_padding) * min(height, width))
    top, left = (height - side + 1) // 2, (width - side + 1) // 2
    square = image[top:top + side, left:left + side]
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)


def photos(size):
    return np.stack([center_crop(skimage.data.chelsea(), size), center_crop(skimage.data.coffee(), size)])


def run_frozen(frozen, images, optimize=True):
    """Import ``frozen`` into a fresh v1 graph and run it on ``images`` with a Session.

    optimize=False skips Grappler, which spends ~5 s on InceptionV3's 88 MB of constants.
    """
    graph = tf.Graph()
    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = not optimize
    with graph.as_default():
        pixels = tf.compat.v1.placeholder(tf.float32, [None, frozen.image_size, frozen.image_size, 3])
        embedding = encoders.import_encoder(frozen, pixels)
        assert embedding.shape.as_list() == [None, frozen.embed_size]
        with tf.compat.v1.Session(graph=graph, config=config) as session:
            return session.run(embedding, {pixels: images})


@pytest.fixture(scope="module")
def lite0_classifier():
    return efficientnet_lite.efficientnet_lite0(include_top=True, weights="imagenet")


@pytest.fixture(scope="module")
def random_inception():
    return encoders.get_cnn_encoder("inception_v3", weights=None)


def test_encoder_table_and_unknown_name():
    assert encoders.ENCODERS["inception_v3"] == encoders.EncoderSpec(image_size=299, embed_size=2048, grid=8)
    assert encoders.ENCODERS["efficientnet_lite0"] == encoders.EncoderSpec(image_size=224, embed_size=1280, grid=7)
    names = "efficientnet_lite0, efficientnet_lite1, efficientnet_lite2, inception_v3"
    with pytest.raises(CapstoneError, match="'resnet'.*" + names):
        encoders.get_cnn_encoder("resnet")
    with pytest.raises(CapstoneError, match="efficientnet_lite0: weights https://.* local .pth file"):
        encoders.get_cnn_encoder("efficientnet_lite0", weights="https://example.org/lite0.pth")


def test_preprocessing_ranges():
    pixels = np.array([0.0, 127.0, 255.0], np.float32)
    np.testing.assert_allclose(cnn.inception_preprocess(pixels), [-1.0, -0.00392157, 1.0], atol=1e-6)
    np.testing.assert_allclose(efficientnet_lite.preprocess_input(pixels), [-0.9921875, 0.0, 1.0])
    assert pixels[2] == 255.0  # the input is not modified in place


def test_read_packaged_state_dict():
    params = read_state_dict(efficientnet_lite.packaged_weights_path())
    assert len(params) == 296
    assert params["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert params["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert params["_fc.weight"].shape == (1000, 1280)
    assert params["_fc.weight"].flags["C_CONTIGUOUS"] and params["_fc.weight"].dtype == np.float32
    assert params["_bn1.num_batches_tracked"].dtype == np.int64
    assert (params["_bn1.running_var"] > 0).all()
    # Blocks 0..15 with kernels 3,3,3,5,5,3,3,3,5,5,5,5,5,5,5,3: the Lite0 stage table.
    kernels = [params[f"_blocks.{i}._depthwise_conv.weight"].shape[-1] for i in range(16)]
    assert kernels == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]


def test_read_state_dict_rejects_bad_files(tmp_path):
    hostile = tmp_path / "hostile.pth"
    sys_info = {"little_endian": True}
    header = b"".join(pickle.dumps(part) for part in (MAGIC_NUMBER, PROTOCOL_VERSION, sys_info))
    marker = tmp_path / "pwned"
    hostile.write_bytes(header + f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(CapstoneError, match="hostile.pth: not a PyTorch state dict.*os.system"):
        read_state_dict(str(hostile))
    assert not marker.exists()

    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(CapstoneError, match="notes.pth: not a PyTorch state dict"):
        read_state_dict(str(text))

    zipped = tmp_path / "new.pth"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("archive/data.pkl", b"")
    with pytest.raises(CapstoneError, match="new.pth: zip-format"):
        read_state_dict(str(zipped))

    with pytest.raises(CapstoneError, match="missing.pth: cannot read"):
        read_state_dict(str(tmp_path / "missing.pth"))


def test_lite0_classifies_cat_and_coffee(lite0_classifier):
    logits = lite0_classifier.predict(efficientnet_lite.preprocess_input(photos(224)), verbose=0)
    assert logits.shape == (2, 1000)
    cat_top5, coffee_top5 = np.argsort(-logits, axis=1)[:, :5]
    print("chelsea top-5:", cat_top5, "coffee top-5:", coffee_top5)
    assert cat_top5[0] in CAT_CLASSES
    assert set(cat_top5[:3]) <= set(CAT_CLASSES)
    assert coffee_top5[0] in COFFEE_CLASSES


def test_lite0_weights_must_match(lite0_classifier):
    params = read_state_dict(efficientnet_lite.packaged_weights_path())
    del params["_blocks.3._project_conv.weight"]
    with pytest.raises(CapstoneError, match="lite.pth: no parameter '_blocks.3._project_conv.weight'"):
        efficientnet_lite.load_torch_weights(lite0_classifier, params, "lite.pth")


def test_frozen_lite0_equals_eager_and_is_cached(tmp_path, monkeypatch):
    cache_dir = tmp_path / "encoders"
    cache_file = cache_dir / "efficientnet_lite0-imagenet-v2.pb"
    cache_dir.mkdir()
    cache_file.write_bytes(b"half-written garbage")  # a broken cache entry is rebuilt
    with tf.Graph().as_default():  # the way the captioning code calls it
        frozen = encoders.frozen_encoder("efficientnet_lite0", cache_dir=str(cache_dir))
    assert (frozen.input_name, frozen.output_name) == ("images:0", "embedding:0")
    assert (frozen.image_size, frozen.embed_size) == (224, 1280)
    assert sorted(os.listdir(cache_dir)) == [cache_file.name]
    assert cache_file.stat().st_size > 10_000_000  # 3.4 M float32 weights as constants

    model, preprocess_for_model = encoders.get_cnn_encoder("efficientnet_lite0")
    noise = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3))
    images = np.concatenate([photos(224), noise]).astype(np.float32)
    eager = model(preprocess_for_model(images), training=False).numpy()
    frozen_out = run_frozen(frozen, images)
    assert frozen_out.shape == (4, 1280)
    assert np.abs(frozen_out - eager).max() < 1e-4
    assert eager.std() > 0.1  # real features, not a constant
    with tf.Graph().as_default() as graph:  # the feature grid the pooled embedding averages
        pixels = tf.compat.v1.placeholder(tf.float32, [None, 224, 224, 3])
        grid = encoders.import_encoder(frozen, pixels, spatial=True)
        with tf.compat.v1.Session(graph=graph) as session:
            grid = session.run(grid, {pixels: images})
    assert grid.shape == (4, 7, 7, 1280) and frozen.features_name == "features:0"
    np.testing.assert_allclose(grid.mean(axis=(1, 2)), frozen_out, atol=1e-4)

    def must_not_rebuild(*args, **kwargs):
        raise AssertionError("the cached GraphDef should have been used")

    monkeypatch.setattr(frozen_module, "get_cnn_encoder", must_not_rebuild)
    start = time.perf_counter()
    cached = encoders.frozen_encoder("efficientnet_lite0", cache_dir=str(cache_dir))
    assert time.perf_counter() - start < 2.0
    np.testing.assert_allclose(run_frozen(cached, images[:1]), frozen_out[:1], atol=1e-5)


def test_frozen_inception_equals_eager(random_inception):
    model, preprocess_for_model = random_inception
    frozen = encoders.freeze_encoder(model, 299, preprocess_for_model, "inception_v3")
    assert (frozen.image_size, frozen.embed_size) == (299, 2048)
    images = np.random.default_rng(1).uniform(0, 255, (2, 299, 299, 3)).astype(np.float32)
    eager = model(preprocess_for_model(images), training=False).numpy()
    frozen_out = run_frozen(frozen, images, optimize=False)
    assert frozen_out.shape == (2, 2048)
    # Random weights give small embeddings, so also check the difference relative to their size.
    scale = np.abs(eager).max()
    assert scale > 0
    assert np.abs(frozen_out - eager).max() < min(1e-4, 1e-4 * scale)


def test_import_encoder_checks_its_input():
    frozen = encoders.FrozenEncoder(
        tf.compat.v1.GraphDef(), "images:0", "embedding:0", 224, 1280, "efficientnet_lite0"
    )
    with tf.Graph().as_default():
        too_small = tf.compat.v1.placeholder(tf.float32, [None, 299, 299, 3])
        expected = r"float32 \(None, 299, 299, 3\); expected float32 \[None, 224, 224, 3\]"
        with pytest.raises(CapstoneError, match=expected):
            encoders.import_encoder(frozen, too_small)
        as_bytes = tf.compat.v1.placeholder(tf.uint8, [None, 224, 224, 3])
        with pytest.raises(CapstoneError, match="uint8"):
            encoders.import_encoder(frozen, as_bytes)
    with pytest.raises(CapstoneError, match="tf.compat.v1 graph"):
        encoders.import_encoder(frozen, tf.zeros([1, 224, 224, 3]))


def test_missing_imagenet_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    expected = tmp_path / "models" / cnn.INCEPTION_WEIGHTS_FILE
    with pytest.raises(CapstoneError) as error:
        encoders.get_cnn_encoder("inception_v3")
    assert str(expected) in str(error.value)
    assert "efficientnet_lite0" in str(error.value)
    with pytest.raises(CapstoneError, match="nowhere.h5 does not exist"):
        encoders.get_cnn_encoder("inception_v3", weights=str(tmp_path / "nowhere.h5"))




def test_download_weights_once(tmp_path):
    weights = b"\x89HDF" + bytes(range(256)) * 40
    cache = tmp_path / "cache"
    with FileServer({"/small.h5": weights}) as server:
        path = cnn.download_weights(server.url + "/small.h5", str(cache))
        assert path == str(cache / "small.h5")
        assert open(path, "rb").read() == weights
        assert cnn.download_weights(server.url + "/small.h5", str(cache)) == path
        assert server.paths_requested() == ["/small.h5"]  # the second call used the file on disk

        with pytest.raises(CapstoneError, match="cannot download .*/absent.h5.*efficientnet_lite0"):
            cnn.download_weights(server.url + "/absent.h5", str(cache))
        server.cut_after = 100  # the connection drops in the middle of the body
        server.requests.clear()
        server.files["/cut.h5"] = weights
        with pytest.raises(CapstoneError, match="cannot download .*/cut.h5"):
            cnn.download_weights(server.url + "/cut.h5", str(cache))
    assert sorted(os.listdir(cache)) == ["small.h5"]  # no partial file left behind


@pytest.mark.slow  # builds InceptionV3 twice and moves 88 MB of weights: ~15 s on 2 cores
def test_inception_weights_from_url(tmp_path, monkeypatch, random_inception):
    model, preprocess_for_model = random_inception
    saved = tmp_path / "my_inception.weights.h5"
    model.save_weights(str(saved))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with FileServer({"/my_inception.weights.h5": saved.read_bytes()}) as server:
        loaded, _ = encoders.get_cnn_encoder("inception_v3", weights=server.url + "/my_inception.weights.h5")
    assert (tmp_path / "keras" / "models" / "my_inception.weights.h5").exists()
    pixels = np.random.default_rng(2).uniform(0, 255, (1, 139, 139, 3)).astype(np.float32)
    images = preprocess_for_model(pixels)
    np.testing.assert_allclose(loaded(images).numpy(), model(images).numpy(), atol=1e-6)
