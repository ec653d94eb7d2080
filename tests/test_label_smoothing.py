"""Label smoothing: loss + eps * penalty is the cross-entropy against (1 - eps) one-hot + eps / vocab,
for every decoder, with the right gradient; a smoothed model learns softer probabilities; bad values fail."""

import json

import numpy as np
import pytest
import tensorflow as tf

from capstone.attention import AttentionDecoder
from capstone.config import ModelConfig, TrainingConfig, config_from_dict
from capstone.errors import CapstoneError
from capstone.fast.label_smoothing import label_smoothing_penalty
from capstone.training import build_training_graph, generate_batch
from test_fast_decoder import course_and_fast_decoders

v1 = tf.compat.v1
CONFIG = ModelConfig(img_embed_size=24, img_embed_bottleneck=16, word_embed_size=12, lstm_units=20, logit_bottleneck=10)
VOCAB_SIZE, PAD_IDX, EPS = 41, 0, 0.2


def smoothed_cross_entropy(logits, targets, eps):
    """The definition, in numpy: mean over rows of -sum_v q_v log softmax(logits)_v."""
    logits = logits.astype(np.float64)
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    q = np.full(logits.shape, eps / logits.shape[1])
    q[np.arange(len(targets)), targets] += 1 - eps
    return float(-(q * log_p).sum(1).mean())


def sentences(rng, rows=6, width=9):
    """Captions of different lengths (START-like first token, PAD after the end)."""
    out = np.full((rows, width), PAD_IDX, dtype=np.int32)
    for row in range(rows):
        length = rng.integers(2, width + 1)
        out[row, :length] = rng.integers(1, VOCAB_SIZE, length)
    return out


def test_course_and_fast_decoders_minimise_the_smoothed_cross_entropy_with_the_same_gradient():
    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(1)
        course, fast, variables = course_and_fast_decoders(VOCAB_SIZE, PAD_IDX, CONFIG)
        # TensorFlow's own label smoothing on the course graph's logits is the reference.
        labels = tf.one_hot(course.flat_ground_truth, VOCAB_SIZE) * (1 - EPS) + EPS / VOCAB_SIZE
        per_word = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=course.flat_token_logits)
        reference = tf.reduce_sum(per_word * course.flat_loss_mask) / tf.reduce_sum(course.flat_loss_mask)
        objectives = [reference] + [d.loss + EPS * label_smoothing_penalty(d) for d in (course, fast)]
        gradients = [[tf.convert_to_tensor(g) for g in tf.gradients(o, variables)] for o in objectives]
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    batch = sentences(rng)
    embeds = rng.random((len(batch), CONFIG.img_embed_size), dtype=np.float32)
    feed = {course.img_embeds: embeds, course.sentences: batch, fast.img_embeds: embeds, fast.sentences: batch}
    values, grads, logits, truth, mask = session.run(
        [objectives, gradients, course.flat_token_logits, course.flat_ground_truth, course.flat_loss_mask], feed)
    real = mask > 0
    assert values[0] == pytest.approx(smoothed_cross_entropy(logits[real], truth[real], EPS), abs=1e-5)
    assert values[0] > session.run(course.loss, feed) - 1e-6  # smoothing only adds (the entropy of q)
    for value, grad in zip(values[1:], grads[1:]):
        assert value == pytest.approx(values[0], abs=1e-5)
        for expected, got in zip(grads[0], grad):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_attention_decoder_penalty_is_its_smoothed_cross_entropy():
    rng = np.random.default_rng(1)
    config = ModelConfig(decoder="attention", img_embed_size=8, img_embed_bottleneck=6, word_embed_size=5,
                         lstm_units=7, logit_bottleneck=4, attention_units=5, dropout=0.0)
    graph = tf.Graph()
    with graph.as_default():
        decoder = AttentionDecoder(VOCAB_SIZE, PAD_IDX, config)
        penalty = label_smoothing_penalty(decoder)
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    batch = sentences(rng)
    feed = {decoder.img_embeds: rng.random((len(batch), 3, 3, 8), dtype=np.float32), decoder.sentences: batch}
    xent, value, inputs, targets, kernel, bias = session.run(
        [decoder.cross_entropy, penalty, decoder.logits_bottleneck, decoder.targets,
         decoder.layers.token_logits.kernel, decoder.layers.token_logits.bias], feed)
    assert len(targets) == np.sum(batch[:, 1:] != PAD_IDX)
    expected = smoothed_cross_entropy(inputs @ kernel + bias, targets, EPS)
    assert xent + EPS * value == pytest.approx(expected, abs=1e-5)


def mean_probability_of_the_truth(label_smoothing, steps=250):
    """Train the fast decoder on captions its image determines; the mean probability it then gives
    the right next word, on its own training batches."""
    rng = np.random.default_rng(0)
    vocab = {"#PAD#": 0, "#UNK#": 1, "#START#": 2, "#END#": 3, **{f"w{i}": i + 4 for i in range(8)}}
    images = rng.standard_normal((8, 24)).astype(np.float32)
    indexed = [[[2, 4 + i, 4 + (i + 1) % 8, 4 + (i + 3) % 8, 3]] for i in range(8)]  # one caption per image
    model = ModelConfig(img_embed_size=24, img_embed_bottleneck=16, word_embed_size=12, lstm_units=32,
                        logit_bottleneck=16, dropout=0.0)
    g = build_training_graph(vocab, model, TrainingConfig(seed=0, learning_rate=0.01,
                                                           label_smoothing=label_smoothing))
    session = v1.Session(graph=g.graph)
    session.run(g.init)
    for _ in range(steps):
        session.run(g.train_op, generate_batch(g.decoder, images, indexed, 16, 20, rng))
    token_logits = g.decoder.layers.token_logits
    inputs, targets, kernel, bias = session.run(
        [g.decoder.logits_bottleneck, g.decoder.targets, token_logits.kernel, token_logits.bias],
        generate_batch(g.decoder, images, indexed, 16, 20, rng))
    logits = inputs @ kernel + bias
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return float(probs[np.arange(len(targets)), targets].mean())


def test_a_smoothed_decoder_learns_the_smoothed_target_not_certainty():
    # The best a model can do against (1 - eps) one-hot + eps / V is to predict exactly that: 0.7 + 0.3 / 12.
    plain, smoothed = mean_probability_of_the_truth(0.0), mean_probability_of_the_truth(0.3)
    assert plain > 0.97
    assert 0.6 < smoothed < 0.8


@pytest.mark.parametrize("field,value", [("label_smoothing", 1.0), ("label_smoothing", -0.1),
                                         ("label_smoothing", "0.1"), ("label_smoothing", True)])
def test_label_smoothing_outside_zero_to_one_is_one_clear_error(field, value):
    with pytest.raises(CapstoneError, match=f"^{field} must be a number >= 0 and < 1, got"):
        TrainingConfig(**{field: value})
    with pytest.raises(CapstoneError, match=field):  # also from a run's config.json
        config_from_dict(TrainingConfig, json.loads(json.dumps({field: value})), "config.json")


@pytest.mark.parametrize("value", [1.0, 1.5, -0.5])
def test_dropout_outside_zero_to_one_is_one_clear_error(value):
    with pytest.raises(CapstoneError, match=r"^dropout must be a number >= 0 and < 1, got"):
        ModelConfig(dropout=value)


def test_old_configs_without_label_smoothing_train_as_before():
    assert config_from_dict(TrainingConfig, {"batch_size": 8}, "config.json").label_smoothing == 0.0
