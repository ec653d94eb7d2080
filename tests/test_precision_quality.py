"""bfloat16 says the same things as float32: greedy captions of a trained model, and embeddings.

Built with an explicit precision (no hardware check), so they run on any CPU; where the CPU lacks
native bfloat16 TensorFlow emulates it (slower, the same numbers). The 300-step training losses on
real Flickr8k data, one per decoder, are the slow tests at the end.
"""

import os

import numpy as np
import pytest

from capstone.encoders import frozen_encoder
from capstone.encoders.embed import EncoderSession
from capstone.final_model import FinalModel
from capstone.support import run_dir as runs
from capstone.encoders.images import image_for_model
from serve_support import IMAGE_SIZE, SCENES, embed_pictures, encode_file, scene_picture, tiny_encoder, trained_run_dir

F8 = "/tmp/f8"                                          # Lite0 embeddings of Flickr8k (see README "Real photos")
F8_GRIDS = "/tmp/f8l1"                                  # Lite1 feature grids of Flickr8k (embed --spatial)
FLICKR = "/work/shared/data/flickr8k"


def caption_both(run_dir, encoder=None, **inputs):
    """Greedy captions of ``inputs`` (images or embeddings) from the run's best checkpoint, in each precision."""
    captions = {}
    for name in ("float32", "bfloat16"):
        model = FinalModel(runs.load_run(run_dir), encoder=encoder, precision=name)
        captions[name] = model.captions(**inputs)
        model.close()
    return captions


def test_greedy_captions_of_a_trained_model_agree_on_300_pictures():
    rng = np.random.default_rng(11)
    pictures = [scene_picture(*SCENES[label], rng=rng) for label in rng.integers(0, len(SCENES), 300)]
    embeds = embed_pictures(tiny_encoder(), pictures)
    captions = caption_both(trained_run_dir(), embeddings=embeds)
    same = np.mean([a == b for a, b in zip(captions["float32"], captions["bfloat16"])])
    assert same >= 0.95
    assert len(set(captions["float32"])) > 5  # real captions, not one repeated string
    # From pixels: the encoder in front, under oneDNN's rewrite as well as the decoder's casts.
    pixels = np.stack([image_for_model(encode_file(p), IMAGE_SIZE) for p in pictures[:100]])
    from_pixels = caption_both(trained_run_dir(), encoder=tiny_encoder(), images=pixels)
    assert from_pixels["float32"] == captions["float32"][:100]
    assert np.mean([a == b for a, b in zip(from_pixels["float32"], from_pixels["bfloat16"])]) >= 0.95


def cosine_rows(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def embed_both(frozen, pixels):
    out = {}
    for name in ("float32", "bfloat16"):
        session = EncoderSession(frozen, name)
        out[name] = session(pixels)
        session.close()
    return out


def photos(size, count):
    """``count`` Flickr8k photos (or, without them, smooth random pictures) as [count, size, size, 3] pixels."""
    import cv2

    folder = os.path.join(FLICKR, "images")
    if os.path.isdir(folder):
        names = sorted(os.listdir(folder))[:count]
        return np.stack([cv2.resize(cv2.cvtColor(cv2.imread(os.path.join(folder, n)), cv2.COLOR_BGR2RGB), (size, size))
                         for n in names]).astype(np.float32)
    rng = np.random.default_rng(0)
    return np.stack([cv2.resize(rng.uniform(0, 255, (8, 8, 3)).astype(np.float32), (size, size))
                     for _ in range(count)])


def test_efficientnet_lite0_embeddings_in_bfloat16_keep_their_direction():
    out = embed_both(frozen_encoder("efficientnet_lite0"), photos(224, 8))
    assert out["bfloat16"].dtype == np.float32
    assert cosine_rows(out["float32"], out["bfloat16"]).min() >= 0.999
    assert not np.array_equal(out["float32"], out["bfloat16"])  # the rewrite did happen


@pytest.mark.slow
def test_inception_v3_embeddings_in_bfloat16_keep_their_direction():
    out = embed_both(frozen_encoder("inception_v3", weights=None), photos(299, 4))  # random weights
    assert cosine_rows(out["float32"], out["bfloat16"]).min() >= 0.999
    assert not np.array_equal(out["float32"], out["bfloat16"])


@pytest.mark.slow
def test_300_steps_on_flickr8k_in_bfloat16_end_within_one_percent_of_float32():
    """The course's sizes and vocabulary on the Lite0 embeddings of Flickr8k, 300 steps of 64, the same batches."""
    if not os.path.exists(os.path.join(F8, "all_train_img_fns.pickle")):
        pytest.skip("the Flickr8k embeddings in /tmp/f8 are absent")
    from capstone.captions import caption_tokens_to_indices, generate_vocabulary
    from capstone.commands.common import load_split
    from capstone.config import ModelConfig, TrainingConfig
    from test_precision import train_steps_with

    embeds, captions = load_split(f"{F8}/all_train_img_embeds.pickle", f"{F8}/all_train_img_fns.pickle",
                                  [os.path.join(FLICKR, "captions.csv")])
    vocab = generate_vocabulary(captions, min_count=5)
    indexed = caption_tokens_to_indices(captions, vocab)
    model = ModelConfig(img_embed_size=embeds.shape[1])
    end = {}
    for name in ("float32", "bfloat16"):
        losses = train_steps_with(model, vocab, indexed, embeds, TrainingConfig(precision=name), 300, batch_size=64)
        end[name] = losses[-20:].mean()
    assert abs(end["bfloat16"] - end["float32"]) < 0.01 * end["float32"]


@pytest.mark.slow
def test_300_attention_steps_on_flickr8k_grids_in_bfloat16_end_within_one_percent_of_float32():
    """The attention decoder (which ``--precision auto`` trains in bfloat16 where the CPU has it) on the
    8 x 8 x 1280 EfficientNet-Lite1 grids of Flickr8k: its cross-entropy, not its loss, which the
    attention penalty dominates."""
    features = os.path.join(F8_GRIDS, "all_train_img_features.npy")
    if not os.path.exists(features):
        pytest.skip(f"the Flickr8k feature grids {features} are absent")
    from capstone.captions import caption_tokens_to_indices, generate_vocabulary
    from capstone.commands.common import load_split
    from capstone.config import ModelConfig, TrainingConfig
    from test_precision import train_steps_with

    grids, captions = load_split(features, f"{F8_GRIDS}/all_train_img_fns.pickle",
                                 [os.path.join(FLICKR, "captions.csv")])
    vocab = generate_vocabulary(captions, min_count=5)
    indexed = caption_tokens_to_indices(captions, vocab)
    model = ModelConfig(decoder="attention", img_embed_size=grids.shape[-1])
    end = {}
    for name in ("float32", "bfloat16"):
        xents = train_steps_with(model, vocab, indexed, grids, TrainingConfig(precision=name), 300, batch_size=64,
                                 loss="cross_entropy")
        assert xents[-1] < 0.6 * xents[0]                                 # it did learn
        end[name] = xents[-20:].mean()
    assert abs(end["bfloat16"] - end["float32"]) < 0.01 * end["float32"]
