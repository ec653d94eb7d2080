"""Mutation tests of the decoder a learner builds (its tensors' shapes, the loss at random
initialisation, a validation loss computed from its logits): each wrong graph caught by the grader with
a useful message, on the shapes and the Flickr8k-dev vocabularies. The reference decoders pass."""

import math

import pytest
import tensorflow as tf

from capstone import captions as ref
from capstone.captions import PAD
from capstone.config import ModelConfig
from capstone.decoder import SCOPE, make_layers
from capstone.grading import Grader
from capstone.grading import problem as grading_problem
from capstone.layers import LSTMState
from grading_mutant_data import data, flickr_dir  # noqa: F401  (pytest fixtures)


v1 = tf.compat.v1
# distinct sizes, so a skipped layer always changes a variable's shape
TINY = ModelConfig(img_embed_size=16, img_embed_bottleneck=8, word_embed_size=12, lstm_units=20, logit_bottleneck=10)


# --- decoder -----------------------------------------------------------------------------------

class CourseDecoder:
    """The notebook's solution: the course's decoder on the package's layers."""

    def __init__(self, vocab_size, pad_idx, config):
        self.vocab_size, self.pad_idx, self.config = vocab_size, pad_idx, config
        with v1.variable_scope(SCOPE):
            layers = make_layers(vocab_size, config, build=False)
            (self.img_embed_to_bottleneck, self.img_embed_bottleneck_to_h0, self.word_embed, self.lstm,
             self.token_logits_bottleneck, self.token_logits) = layers
            self.img_embeds = v1.placeholder(tf.float32, [None, config.img_embed_size])
            self.sentences = v1.placeholder(tf.int32, [None, None])
            self.build_initial_state()
            self.build_word_embeddings()
            self.build_rnn()
            self.build_logits()
            self.build_loss()

    def build_initial_state(self):
        self.h0 = self.img_embed_bottleneck_to_h0(self.img_embed_to_bottleneck(self.img_embeds))
        self.c0 = self.h0

    def build_word_embeddings(self):
        self.word_embeds = self.word_embed(self.sentences[:, :-1])

    def build_rnn(self):
        self.lstm.build(self.config.word_embed_size)
        self.hidden_states, _ = v1.nn.dynamic_rnn(self.lstm, self.word_embeds,
                                                  initial_state=LSTMState(c=self.c0, h=self.h0), scope="rnn")

    def build_logits(self):
        self.flat_hidden_states = tf.reshape(self.hidden_states, [-1, self.config.lstm_units])
        self.flat_token_logits = self.token_logits(self.token_logits_bottleneck(self.flat_hidden_states))
        self.flat_ground_truth = tf.reshape(self.sentences[:, 1:], [-1])
        self.flat_loss_mask = tf.cast(tf.not_equal(self.flat_ground_truth, self.pad_idx), tf.float32)

    def xent(self, logits=None):
        return tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=self.flat_ground_truth, logits=self.flat_token_logits if logits is None else logits)

    def build_loss(self):
        self.loss = tf.reduce_sum(self.xent() * self.flat_loss_mask) / tf.reduce_sum(self.flat_loss_mask)


def mutant(name, **methods):
    return type(name, (CourseDecoder,), methods)


def _logits_then(self, logits=None, gt=None, mask=None):
    self.flat_hidden_states = tf.reshape(self.hidden_states, [-1, self.config.lstm_units])
    self.flat_token_logits = logits(self) if logits else self.token_logits(
        self.token_logits_bottleneck(self.flat_hidden_states))
    self.flat_ground_truth = gt(self) if gt else tf.reshape(self.sentences[:, 1:], [-1])
    self.flat_loss_mask = mask(self) if mask else tf.cast(tf.not_equal(self.flat_ground_truth, self.pad_idx),
                                                           tf.float32)


DECODER_MUTANTS = {
    mutant("LossNotMasked", build_loss=lambda self: setattr(self, "loss", tf.reduce_mean(self.xent()))):
        "plain mean",
    mutant("MaskedSumOverAll", build_loss=lambda self: setattr(
        self, "loss", tf.reduce_mean(self.xent() * self.flat_loss_mask))): "divided by every position",
    mutant("MaskedSum", build_loss=lambda self: setattr(
        self, "loss", tf.reduce_sum(self.xent() * self.flat_loss_mask))): "a sum",
    mutant("GroundTruthNotShifted", build_logits=lambda self: _logits_then(
        self, gt=lambda s: tf.reshape(s.sentences[:, :-1], [-1]))): "sentences[:, 1:]",
    mutant("H0WithoutBottleneck", build_initial_state=lambda self: (
        setattr(self, "h0", self.img_embed_bottleneck_to_h0(self.img_embeds)), setattr(self, "c0", self.h0))):
        "img_embed_to_bottleneck.kernel",
    mutant("C0Zeros", build_initial_state=lambda self: (
        setattr(self, "h0", self.img_embed_bottleneck_to_h0(self.img_embed_to_bottleneck(self.img_embeds))),
        setattr(self, "c0", tf.zeros_like(self.h0)))): "c0 = h0",
    mutant("SoftmaxAsLogits", build_logits=lambda self: _logits_then(
        self, logits=lambda s: tf.nn.softmax(s.token_logits(s.token_logits_bottleneck(s.flat_hidden_states))))):
        "no softmax",
    mutant("SoftmaxInLoss", build_loss=lambda self: setattr(self, "loss", tf.reduce_sum(
        self.xent(tf.nn.softmax(self.flat_token_logits)) * self.flat_loss_mask) / tf.reduce_sum(self.flat_loss_mask))):
        "logits, not probabilities",
    mutant("MaskPadZero", build_logits=lambda self: _logits_then(
        self, mask=lambda s: tf.cast(tf.not_equal(s.flat_ground_truth, 0), tf.float32))): "not with 0",
    mutant("TimeMajorFlatten", build_logits=lambda self: (setattr(self, "hidden_states", tf.transpose(
        self.hidden_states, [1, 0, 2])), _logits_then(self))): "without transposing",
    mutant("NoLogitBottleneck", build_logits=lambda self: _logits_then(
        self, logits=lambda s: s.token_logits(s.flat_hidden_states))): "token_logits_bottleneck.kernel",
    mutant("InvertedMask", build_logits=lambda self: _logits_then(
        self, mask=lambda s: tf.cast(tf.equal(s.flat_ground_truth, s.pad_idx), tf.float32))): "inverted",
    mutant("EmbedsEveryToken", build_word_embeddings=lambda self: (
        setattr(self, "word_embeds", self.word_embed(self.sentences)))): "word_embeds: expected",
    mutant("EmbedsShiftedTokens", build_word_embeddings=lambda self: (
        setattr(self, "word_embeds", self.word_embed(self.sentences[:, 1:])))): "sentences[:, :-1]",
    mutant("GroundTruthAllTokens", build_logits=lambda self: _logits_then(
        self, gt=lambda s: tf.reshape(s.sentences, [-1]))): "flat_ground_truth: expected",
    mutant("LossOfMeanLogits", build_loss=lambda self: setattr(self, "loss", tf.reduce_mean(
        self.xent() * self.flat_loss_mask) * 2.0)): "loss: expected",
}


@pytest.fixture(scope="module")
def vocab_size(data):
    return len(data[1])


def initialised(decoder_class, vocab_size, pad_idx=1):
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        decoder = decoder_class(vocab_size, pad_idx, TINY)
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    return decoder, session


def decoder_grades(decoder_class, vocab_size):
    decoder, session = initialised(decoder_class, vocab_size)
    grader = Grader()
    try:
        return grader.grade_decoder_shapes(decoder, session), grader.grade_random_init_loss(decoder, session)
    finally:
        session.close()


def test_reference_decoders_pass(vocab_size):
    from capstone.decoder import Decoder

    for decoder_class in (CourseDecoder, Decoder):
        shapes, loss = decoder_grades(decoder_class, vocab_size)
        assert shapes.passed and loss.passed, (shapes, loss)
        assert abs(loss.received - math.log(vocab_size)) < 0.1 * math.log(vocab_size)


@pytest.mark.parametrize("decoder_class", DECODER_MUTANTS, ids=lambda c: c.__name__)
def test_decoder_mutant_is_caught(vocab_size, decoder_class):
    shapes, loss = decoder_grades(decoder_class, vocab_size)
    assert not (shapes.passed and loss.passed), (decoder_class.__name__, shapes, loss)
    failed = shapes if not shapes.passed else loss
    assert DECODER_MUTANTS[decoder_class] in failed.message, failed.message
    assert "expected" in failed.message and "received" in failed.message


# --- validation loss ---------------------------------------------------------------------------

def test_validation_loss_is_computed_from_the_logits_not_the_loss_tensor():
    lying = mutant("ZeroLoss", build_loss=lambda self: setattr(self, "loss", tf.constant(0.0)))
    (_, _), (val_embeds, val_captions) = grading_problem.builtin_problem(n_train=1, n_val=20)
    vocab = ref.generate_vocabulary(val_captions, min_count=1)
    config = ModelConfig(img_embed_size=val_embeds.shape[1], img_embed_bottleneck=8, word_embed_size=12,
                         lstm_units=20, logit_bottleneck=10)
    graph = tf.Graph()
    with graph.as_default():
        decoder = lying(len(vocab), vocab[PAD], config)
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    result = Grader().grade_validation_loss(decoder, session, val_embeds, val_captions, vocab, data="shapes")
    assert not result.passed and result.received > 2.0, result  # untrained: about ln V, whatever .loss says
