"""FastDecoder computes the course graph's loss and gradients, whatever the batch looks like."""

import numpy as np
import pytest
import tensorflow as tf

from capstone.config import ModelConfig
from capstone.decoder import Decoder
from capstone.fast import FastDecoder
from capstone.fast.ops import dense_softmax_cross_entropy, pack_by_length

v1 = tf.compat.v1
CONFIG = ModelConfig(img_embed_size=24, img_embed_bottleneck=16, word_embed_size=12, lstm_units=20, logit_bottleneck=10)
VOCAB_SIZE, PAD_IDX = 97, 0


def course_and_fast_decoders(vocab_size, pad_idx, config):
    """The course ``Decoder`` and a ``FastDecoder`` built into the default graph on the same variables:
    (course, fast, the trainable variables)."""
    course = Decoder(vocab_size, pad_idx, config)
    with v1.variable_scope(v1.get_variable_scope(), reuse=True):
        fast = FastDecoder(vocab_size, pad_idx, config)
    return course, fast, v1.trainable_variables()


@pytest.fixture(scope="module")
def both():
    """(course decoder, fast decoder, session): one graph, the same variables."""
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(2)
        course, fast, variables = course_and_fast_decoders(VOCAB_SIZE, PAD_IDX, CONFIG)
        for decoder in (course, fast):  # the embedding's gradient is IndexedSlices: made dense to compare
            decoder.gradients = [tf.convert_to_tensor(g) for g in tf.gradients(decoder.loss, variables)]
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    assert len(variables) == 12  # shared, not duplicated
    return course, fast, session


def sentences_with_lengths(lengths, width, seed=0):
    """[len(lengths), width] ids: START-like token, lengths[i] - 1 words, then PAD."""
    rng = np.random.default_rng(seed)
    sentences = np.full((len(lengths), width), PAD_IDX, dtype=np.int32)
    for row, length in enumerate(lengths):
        sentences[row, :length] = rng.integers(1, VOCAB_SIZE, length)
    return sentences


def compare(both, sentences, seed=0):
    course, fast, session = both
    embeds = np.random.default_rng(seed).random((len(sentences), CONFIG.img_embed_size), dtype=np.float32)
    results = [session.run([d.loss, d.gradients],
                           {d.img_embeds: embeds, d.sentences: sentences}) for d in (course, fast)]
    (course_loss, course_grads), (fast_loss, fast_grads) = results
    assert fast_loss == pytest.approx(course_loss, abs=1e-5)
    for expected, got in zip(course_grads, fast_grads):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    return course_loss, course_grads


@pytest.mark.parametrize("lengths", [
    [20, 3, 11, 20, 7, 2, 15, 9],   # captions of many lengths, as batch_captions_to_matrix makes them
    [6, 6, 6],                      # no padding at all
    [2],                            # one caption of one word
    [9, 1, 4],                      # a row with no target at all (START alone)
])
def test_loss_and_every_gradient_equal_the_course_graph(both, lengths):
    loss, gradients = compare(both, sentences_with_lengths(lengths, max(lengths)))
    if max(lengths) > 1:
        assert loss > 0 and all(np.abs(g).sum() > 0 for g in gradients)


def test_pad_inside_a_caption_is_skipped_like_the_course_mask(both):
    sentences = sentences_with_lengths([12, 8, 10], 12, seed=3)
    sentences[0, 4] = sentences[1, 2] = PAD_IDX  # never produced by batch_captions_to_matrix, still handled
    compare(both, sentences)


def test_batch_without_any_target_gives_zero_loss(both):
    loss, gradients = compare(both, sentences_with_lengths([1, 1], 3))
    assert loss == 0 and all(np.abs(g).sum() == 0 for g in gradients)


def test_fast_hidden_states_are_the_course_ones_up_to_each_caption_end(both):
    course, fast, session = both
    lengths = [7, 3, 5]
    sentences = sentences_with_lengths(lengths, 7, seed=1)
    embeds = np.random.default_rng(1).random((3, CONFIG.img_embed_size), dtype=np.float32)
    feed = {d.img_embeds: embeds for d in (course, fast)}
    feed.update({d.sentences: sentences for d in (course, fast)})
    expected, got, positions = session.run([course.hidden_states, fast.packed_hidden_states,
                                            fast.packing.positions], feed)
    assert got.shape == (sum(n - 1 for n in lengths), CONFIG.lstm_units)  # after the last target nothing runs
    np.testing.assert_allclose(got, expected[positions[:, 0], positions[:, 1]], atol=1e-6)


def test_the_fast_graph_exposes_only_what_it_computes(both):
    _, fast, _ = both
    for course_only in ("flat_token_logits", "flat_ground_truth", "flat_loss_mask", "hidden_states"):
        assert not hasattr(fast, course_only)


def test_one_seed_gives_both_graphs_the_same_initial_weights():
    values = []
    for cls in (Decoder, FastDecoder):
        graph = tf.Graph()
        with graph.as_default():
            v1.set_random_seed(5)
            cls(VOCAB_SIZE, PAD_IDX, CONFIG)
            with v1.Session(graph=graph) as session:
                session.run(v1.global_variables_initializer())
                values.append({v.name: session.run(v) for v in v1.global_variables()})
    assert sorted(values[0]) == sorted(values[1]) and len(values[0]) == 12
    for name in values[0]:
        np.testing.assert_array_equal(values[0][name], values[1][name])


@pytest.mark.parametrize("cls", [Decoder, FastDecoder])
def test_dropout_masks_are_a_function_of_the_fed_seed(cls):
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        d = cls(VOCAB_SIZE, PAD_IDX, ModelConfig(**{**vars(CONFIG), "dropout": 0.5}))
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    feed = {d.img_embeds: np.random.default_rng(0).random((4, CONFIG.img_embed_size), dtype=np.float32),
            d.sentences: sentences_with_lengths([6, 4, 5, 2], 6), d.dropout_rate: 0.5}
    losses = [session.run(d.loss, {**feed, d.dropout_seed: seed}) for seed in ([1, 7], [1, 7], [1, 8], [2, 7])]
    assert losses[0] == losses[1]  # the same (seed, step): the same masks, bit for bit
    assert len({losses[0], losses[2], losses[3]}) == 3
    assert session.run(d.loss, {d.img_embeds: feed[d.img_embeds], d.sentences: feed[d.sentences]}) not in losses


def test_pack_by_length_docstring_example():
    graph = tf.Graph()
    with graph.as_default():
        packing = pack_by_length(tf.constant([[True, True, False], [True, True, True]]))
        with v1.Session(graph=graph) as session:
            order, positions, rows_per_step = session.run(packing)
    assert order.tolist() == [1, 0]
    assert positions.tolist() == [[1, 0], [0, 0], [1, 1], [0, 1], [1, 2]]
    assert rows_per_step.tolist() == [2, 2, 1]


def test_hand_written_cross_entropy_equals_tensorflows():
    rng = np.random.default_rng(0)
    inputs_value = rng.normal(scale=3.0, size=(50, 12)).astype(np.float32)
    kernel_value = rng.normal(scale=3.0, size=(12, 400)).astype(np.float32)  # large logits: needs the max shift
    bias_value = rng.normal(size=400).astype(np.float32)
    labels_value = np.concatenate([rng.integers(0, 400, 45), [7, 7, 7, 3, 3]])  # repeated labels add up
    weights_value = rng.random(50).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        inputs, kernel, bias = (tf.constant(x) for x in (inputs_value, kernel_value, bias_value))
        ours = dense_softmax_cross_entropy(inputs, kernel, bias, labels_value)
        theirs = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels_value,
                                                                logits=tf.matmul(inputs, kernel) + bias)
        grads = [tf.gradients(tf.reduce_sum(x * weights_value), [inputs, kernel, bias]) for x in (ours, theirs)]
        with v1.Session(graph=graph) as session:
            ours, theirs, (our_grads, their_grads) = session.run([ours, theirs, grads])
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)
    assert np.all(np.isfinite(ours)) and ours.max() > 50
    for got, expected in zip(our_grads, their_grads):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_hand_written_cross_entropy_is_exact_where_the_label_probability_underflows():
    """The loss is -log p(label) from the softmax; a label ~150 below its row's best logit has p = 0 in float32,
    so those rows must take the exact log-sum-exp, and the others keep theirs."""
    inputs_value = np.eye(4, 3, dtype=np.float32)                          # rows pick kernel rows; the last is 0
    kernel_value = np.array([[0, 150, 0, 0, 0], [0, 1, 2, 3, 4], [0, 0, 0, 100, 0]], np.float32)
    labels_value = np.array([0, 4, 0, 2])                                  # rows 0 and 2: p(label) underflows
    graph = tf.Graph()
    with graph.as_default():
        inputs, kernel, bias = tf.constant(inputs_value), tf.constant(kernel_value), tf.zeros([5])
        ours = dense_softmax_cross_entropy(inputs, kernel, bias, labels_value)
        theirs = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels_value, logits=tf.matmul(inputs, kernel))
        grads = [tf.gradients(x, [inputs, kernel]) for x in (ours, theirs)]
        with v1.Session(graph=graph) as session:
            ours, theirs, (our_grads, their_grads) = session.run([ours, theirs, grads])
    assert ours[0] > 149 and ours[2] > 99
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-5)
    for got, expected in zip(our_grads, their_grads):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
