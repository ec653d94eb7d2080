"""Show, Attend and Tell: shapes, attention weights, gradients, learning *where*, in-graph decoding, run directories."""

import numpy as np
import pytest
import tensorflow as tf

from capstone.attention import AttentionDecoder
from capstone.attention.layers import attention_step, initial_state, make_attention_layers
from capstone.config import ModelConfig, TrainingConfig
from capstone.decoder import SCOPE
from capstone.errors import CapstoneError
from capstone.final_model import FinalModel
from capstone.training import train
from decoding_oracle import beam_search_tokens_stepwise, greedy_tokens_stepwise
from spatial_synthetic import make_spatial_problem

v1 = tf.compat.v1
SMALL = ModelConfig(decoder="attention", img_embed_size=24, img_embed_bottleneck=12, lstm_units=32, word_embed_size=16,
                    logit_bottleneck=16, attention_units=16, dropout=0.0)
# The course's training (constant rate, no dropout): the margins below were measured with it.
TRAINING = TrainingConfig(batch_size=32, n_epochs=3, n_batches_per_epoch=100, n_validation_batches=5, min_count=1,
                          learning_rate=0.01, lr_decay=1.0)


@pytest.fixture(scope="module")
def problem():
    return make_spatial_problem(depth=24)


@pytest.fixture(scope="module")
def trained(problem, tmp_path_factory):
    """(attention run, pooled run) trained for a few seconds each on the same task."""
    (train_x, train_c, _), (val_x, val_c, _) = problem
    paths = []
    for decoder, convert in (("attention", lambda x: x), ("show_and_tell", lambda x: x.mean(axis=(1, 2)))):
        path = str(tmp_path_factory.mktemp(decoder))
        config = ModelConfig(**{**vars(SMALL), "decoder": decoder})
        train(path, convert(train_x), train_c, convert(val_x), val_c, config, TRAINING, progress=False,
              log=lambda _: None)
        paths.append(path)
    return paths


def built(batch=4, grid=3, length=7, vocab=30, seed=0):
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(seed)
        decoder = AttentionDecoder(vocab, 0, SMALL)
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    rng = np.random.default_rng(seed)
    sentences = rng.integers(1, vocab, (batch, length))
    sentences[0, 4:] = 0  # a caption with a PAD tail
    feed = {decoder.img_embeds: rng.normal(size=(batch, grid, grid, SMALL.img_embed_size)),
            decoder.sentences: sentences}
    return decoder, session, feed


def test_every_tensor_has_its_shape_and_attention_is_a_distribution():
    d, s, feed = built()
    h0, words, hidden, alphas, betas, targets, bottleneck, loss, xent, penalty = s.run(
        [d.h0, d.word_embeds, d.hidden_states, d.alphas, d.betas, d.targets, d.logits_bottleneck, d.loss,
         d.cross_entropy, d.attention_penalty], feed)
    assert h0.shape == (4, 32) and words.shape == (4, 6, 16)
    assert hidden.shape == (4, 6, 32 + 12)  # [h; context of squeezed features]
    real = feed[d.sentences][:, 1:][feed[d.sentences][:, 1:] != 0]
    assert targets.tolist() == real.tolist() and bottleneck.shape == (len(real), 16)  # logits at real words only
    assert alphas.shape == (4, 6, 9) and betas.shape == (4, 6)
    assert (alphas >= 0).all() and np.allclose(alphas.sum(axis=2), 1.0, atol=1e-5)
    assert ((betas > 0) & (betas < 1)).all()
    assert abs(xent - np.log(30)) < 0.3  # untrained: near a uniform guess
    # the doubly stochastic term, recomputed from the weights (PAD positions do not count)
    mask = (feed[d.sentences][:, 1:] != 0).astype(np.float32)
    expected = np.mean(np.sum((1 - (alphas * mask[:, :, None]).sum(axis=1)) ** 2, axis=1))
    assert penalty == pytest.approx(expected, rel=1e-5)
    assert loss == pytest.approx(xent + SMALL.attention_lambda * penalty, rel=1e-6)


def test_gradients_equal_a_plain_unrolled_reference():
    """The while loop's gradients against the same step unrolled in Python, on small sizes.
    (Gradients of a while loop must be built before the session first runs the graph.)"""
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(1)
        d = AttentionDecoder(30, 0, SMALL)
        with v1.variable_scope(SCOPE, reuse=True):
            layers = make_attention_layers(30, SMALL)
        state, logits = initial_state(layers, d.features), []
        projected = layers.feature_projection(d.features)
        for t in range(4):
            state, logits_input, _, _ = attention_step(layers, d.word_embeds[:, t], state, d.features, projected)
            logits.append(layers.token_logits(layers.token_logits_bottleneck(logits_input)))
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=d.sentences[:, 1:], logits=tf.stack(logits, 1))
        mask = tf.cast(tf.not_equal(d.sentences[:, 1:], 0), tf.float32)
        unrolled = tf.reduce_sum(xent * mask) / tf.reduce_sum(mask)
        variables = v1.trainable_variables()
        ours = [tf.convert_to_tensor(g) for g in tf.gradients(d.cross_entropy, variables)]
        reference = [tf.convert_to_tensor(g) for g in tf.gradients(unrolled, variables)]
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    assert len(variables) == 22  # shared with the decoder (reuse), not duplicated
    rng = np.random.default_rng(1)
    sentences = rng.integers(1, 30, (3, 5))
    sentences[0, 3:] = 0
    feed = {d.img_embeds: rng.normal(size=(3, 3, 3, 24)), d.sentences: sentences}
    loss_ours, loss_ref = session.run([d.cross_entropy, unrolled], feed)
    assert loss_ours == pytest.approx(loss_ref, rel=1e-6)
    for got, expected in zip(*session.run([ours, reference], feed)):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
        assert np.abs(expected).sum() > 0


def test_attention_learns_where_and_the_pooled_decoder_cannot(trained, problem):
    (_, _, _), (val_x, val_c, _) = problem
    attention, pooled = (FinalModel.load(path) for path in trained)
    right = [c[0] for c in val_c]
    attention_rate = np.mean(np.array(attention.captions(embeddings=val_x)) == right)
    pooled_rate = np.mean(np.array(pooled.captions(embeddings=val_x.mean(axis=(1, 2)))) == right)
    assert attention_rate >= 0.9 and pooled_rate <= 0.4, (attention_rate, pooled_rate)


def test_attention_looks_at_the_object(trained, problem):
    (_, _, _), (val_x, _, val_where) = problem
    model = FinalModel.load(trained[0])
    maps = model.attention_maps(embeddings=val_x[:40])
    # the strongest look of the whole caption (whichever word takes it) is at the object's location
    looked = [int(np.argmax(np.stack([w for _, w in words]).max(axis=0))) for words in maps]
    assert np.mean([got == where for got, (_, where) in zip(looked, val_where[:40])]) >= 0.8
    assert all(w.shape == (3, 3) and abs(w.sum() - 1) < 1e-4 for words in maps for _, w in words)


def test_in_graph_decoding_equals_the_python_loops(trained, problem):
    (_, _, _), (val_x, _, _) = problem
    model = FinalModel.load(trained[0])
    embeds = val_x[:8]
    assert model.sample_tokens(embeddings=embeds) == greedy_tokens_stepwise(model, embeds)
    for beam_size, max_len in ((3, 20), (2, 3)):
        in_graph = model.beam_search_tokens(embeddings=embeds, beam_size=beam_size, max_len=max_len)
        reference = beam_search_tokens_stepwise(model, embeds, beam_size=beam_size, max_len=max_len)
        assert [[t for t, _ in f] for f in in_graph] == [[t for t, _ in f] for f in reference]
        np.testing.assert_allclose([[s for _, s in f] for f in in_graph], [[s for _, s in f] for f in reference],
                                   atol=1e-5)
    beams = model.attention_maps(embeddings=embeds, beam_size=3)
    assert [" ".join(w for w, _ in words) for words in beams] == [f[0][0] for f in model.beam_captions(
        embeddings=embeds, beam_size=3)]


def test_clear_errors_for_the_wrong_input(trained, problem):
    (_, _, _), (val_x, val_c, _) = problem
    attention, pooled = (FinalModel.load(path) for path in trained)
    with pytest.raises(CapstoneError, match=r"attention decoder .* expects shape \[N, \?, \?, 24\], got \[2, 24\]"):
        attention.captions(embeddings=val_x[:2].mean(axis=(1, 2)))
    with pytest.raises(CapstoneError, match="has no attention maps; train with --decoder attention"):
        pooled.attention_maps(embeddings=val_x[:2].mean(axis=(1, 2)))
    with pytest.raises(CapstoneError, match=r"the attention decoder needs spatial features .* got shape \(150, 24\)"):
        train(str(trained[0]) + "-new", val_x.mean(axis=(1, 2)), val_c, model_config=SMALL, training_config=TRAINING,
              progress=False)


def test_the_loss_falls_while_training(trained):
    from capstone.support import run_dir as runs
    history = runs.read_history(trained[0])
    assert history[-1]["val_loss"] < history[0]["val_loss"] < np.log(20)
    assert runs.load_run(trained[0]).model_config.decoder == "attention"
