"""The course decoder: the grader's shapes, its loss at random init, training, and the fast graph's agreement."""

import numpy as np
import pytest
import tensorflow as tf

from capstone.config import ModelConfig
from capstone.decoder import Decoder
from capstone.fast import FastDecoder

v1 = tf.compat.v1
VOCAB_SIZE, PAD_IDX = 8769, 0  # COCO-sized vocabulary


def course_feed(decoder, seed=0):
    """The grader's feed: 32 random embeddings, 32 x 20 random token ids."""
    rng = np.random.default_rng(seed)
    sentences = rng.integers(1, VOCAB_SIZE, (32, 20))
    sentences[::3, 15:] = PAD_IDX  # some padding, as real batches have
    return {decoder.img_embeds: rng.random((32, 2048), dtype=np.float32), decoder.sentences: sentences}


def build(fast=False, seed=0, learning_rate=None):
    """A decoder in its own graph; with learning_rate also an Adam train op (gradients must be
    added before the session first runs the graph)."""
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(seed)
        decoder = (FastDecoder if fast else Decoder)(VOCAB_SIZE, PAD_IDX, ModelConfig())
        if learning_rate:
            decoder.train_op = v1.train.AdamOptimizer(learning_rate).minimize(decoder.loss)
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    return graph, decoder, session


def test_course_shapes_and_random_init_loss():
    _, d, s = build()
    h0, word_embeds, flat_hidden, flat_logits, flat_truth, flat_mask, loss = s.run(
        [d.h0, d.word_embeds, d.flat_hidden_states, d.flat_token_logits, d.flat_ground_truth,
         d.flat_loss_mask, d.loss], course_feed(d))
    assert h0.shape == (32, 300)
    assert word_embeds.shape == (32, 19, 100)
    assert flat_hidden.shape == (608, 300)
    assert flat_logits.shape == (608, VOCAB_SIZE)
    assert flat_truth.shape == (608,) and flat_mask.shape == (608,)
    assert flat_mask.sum() == 608 - 11 * 5  # rows 0, 3, ..., 30 have 5 PAD targets each (tokens 15..19)
    assert np.ndim(loss) == 0
    # an untrained decoder is close to a uniform guess over the vocabulary
    assert abs(loss - np.log(VOCAB_SIZE)) < 0.1


def test_two_decoders_in_one_process_are_independent():
    g1, d1, _ = build(seed=1)
    g2, d2, _ = build(seed=1)
    assert d1.loss.graph is g1 and d2.loss.graph is g2
    with g1.as_default():
        names = [v.name for v in v1.global_variables()]
    assert "decoder/lstm/recurrent_kernel:0" in names and len(names) == 12


def test_fast_graph_matches_straightforward_graph_while_training(tmp_path):
    """Same weights, same batch, 5 Adam steps: the losses agree within 1e-4 at every step."""
    losses = {}
    checkpoint = str(tmp_path / "init")
    for fast in (False, True):
        graph, d, s = build(fast=fast, seed=3, learning_rate=0.01)
        with graph.as_default():
            saver = v1.train.Saver(v1.global_variables(scope="decoder"))
            if fast:
                saver.restore(s, checkpoint)
            else:
                saver.save(s, checkpoint, write_meta_graph=False)
            feed = course_feed(d)
            losses[fast] = [s.run([d.loss, d.train_op], feed)[0] for _ in range(5)]
    np.testing.assert_allclose(losses[True], losses[False], atol=1e-4)
    assert losses[False][-1] < losses[False][0] - 0.5  # and it is learning (fitting one batch)


def test_dropout_is_only_active_when_fed():
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        d = Decoder(50, 0, ModelConfig(img_embed_size=8, dropout=0.5))
        s = v1.Session(graph=graph)
        s.run(v1.global_variables_initializer())
    rng = np.random.default_rng(0)
    feed = {d.img_embeds: rng.random((4, 8), dtype=np.float32), d.sentences: rng.integers(1, 50, (4, 6))}
    assert s.run(d.loss, feed) == pytest.approx(s.run(d.loss, feed))  # deterministic without dropout
    h0 = s.run(d.h0, feed)
    np.testing.assert_array_equal(h0, s.run(d.h0, feed))
    feed[d.dropout_rate] = 0.5
    with_dropout = s.run(d.loss, feed)
    assert with_dropout != pytest.approx(s.run(d.loss, {**feed, d.dropout_rate: 0.0}))
    assert with_dropout != pytest.approx(s.run(d.loss, {**feed, d.dropout_seed: [0, 1]}))  # another step's masks
    # the image embedding is dropped too (where a small dataset overfits first), so h0 changes
    assert not np.allclose(s.run(d.h0, feed), h0)
