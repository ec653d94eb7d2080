"""Mutation tests: wrong implementations a learner writes, each caught by the grader, with a useful message.

Text and decoder mutants run on the shapes captions and on the Flickr8k-dev captions (that half
skips when ../shared/data/flickr8k-dev is absent); generate_batch, validation-loss and sampler
mutants use the grader's own problems, so they run once. The reference passes everything.
"""

import collections
import math

import numpy as np
import pytest
import tensorflow as tf

from capstone import captions as ref
from capstone.captions import END, PAD, SPECIAL_TOKENS, START, UNK, split_sentence
from capstone.config import ModelConfig
from capstone.data.caption_files import load_captions
from capstone.decoder import SCOPE, make_layers
from capstone.grading import Grader
from capstone.grading import problem as grading_problem
from capstone.grading.sampler import reference_generate_caption, reference_one_step
from capstone.layers import LSTMState
from capstone.training import generate_batch as ref_generate_batch

v1 = tf.compat.v1
# distinct sizes, so a skipped layer always changes a variable's shape
TINY = ModelConfig(img_embed_size=16, img_embed_bottleneck=8, word_embed_size=12, lstm_units=20, logit_bottleneck=10)


@pytest.fixture(scope="module", params=["shapes", "flickr"])
def data(request):
    """(train captions, vocab) of one dataset."""
    if request.param == "shapes":
        (_, captions), _ = grading_problem.builtin_problem(n_train=200, n_val=1)
    else:
        request.getfixturevalue("flickr_dir")
        fn_to_captions = load_captions(str(request.getfixturevalue("flickr_dir") / "captions.csv"))
        captions = [fn_to_captions[fn] for fn in sorted(fn_to_captions)]
    return captions, ref.generate_vocabulary(captions, min_count=5)


@pytest.fixture(scope="module")
def flickr_dir():  # module scope, for the module-scoped data fixture; skips as conftest's does
    from tests.conftest import FLICKR_DIR

    if not (FLICKR_DIR / "captions.csv").exists():
        pytest.skip("../shared/data/flickr8k-dev is absent")
    return FLICKR_DIR


# --- vocabulary --------------------------------------------------------------------------------

def _counts(captions):
    return collections.Counter(t for caps in captions for c in caps for t in split_sentence(c))


def vocab_any_order(captions, min_count=5):
    words = [t for t, n in _counts(captions).items() if n >= min_count] + list(SPECIAL_TOKENS)
    return {t: i for i, t in enumerate(words)}


def vocab_off_by_one(captions, min_count=5):
    words = [t for t, n in _counts(captions).items() if n > min_count] + list(SPECIAL_TOKENS)
    return {t: i for i, t in enumerate(sorted(words))}


def vocab_once_per_caption(captions, min_count=5):
    counts = collections.Counter(t for caps in captions for c in caps for t in set(split_sentence(c)))
    return {t: i for i, t in enumerate(sorted([t for t, n in counts.items() if n >= min_count] + list(SPECIAL_TOKENS)))}


def vocab_ignores_min_count(captions, min_count=5):
    return ref.generate_vocabulary(captions, 5)


def vocab_no_specials(captions, min_count=5):
    return {t: i for i, t in enumerate(sorted(t for t, n in _counts(captions).items() if n >= min_count))}


def vocab_from_one(captions, min_count=5):
    return {t: i + 1 for t, i in ref.generate_vocabulary(captions, min_count).items()}


def vocab_str_split(captions, min_count=5):
    counts = collections.Counter(t for caps in captions for c in caps for t in c.lower().split())
    return {t: i for i, t in enumerate(sorted([t for t, n in counts.items() if n >= min_count] + list(SPECIAL_TOKENS)))}


VOCABULARY_MUTANTS = {
    vocab_any_order: "sorted token order", vocab_off_by_one: "exactly min_count", vocab_once_per_caption: "missing",
    vocab_ignores_min_count: "min_count=", vocab_no_specials: "special tokens", vocab_from_one: "0..",
    vocab_str_split: "tokens missing",
}


def test_reference_passes_every_text_part(data):
    captions, vocab = data
    grader = Grader()
    assert grader.grade_vocabulary(ref.generate_vocabulary, captions, min_count=5).passed
    assert grader.grade_indexing(ref.caption_tokens_to_indices, captions, vocab).passed
    assert grader.grade_batching(ref.batch_captions_to_matrix, vocab[PAD]).passed


@pytest.mark.parametrize("mutant", VOCABULARY_MUTANTS, ids=lambda f: f.__name__)
def test_vocabulary_mutant_is_caught(data, mutant):
    captions, _ = data
    result = Grader().grade_vocabulary(mutant, captions, min_count=5)
    assert not result.passed and result.done, result
    assert VOCABULARY_MUTANTS[mutant] in result.message, result.message
    assert "expected" in result.message and "received" in result.message


# --- indexing ----------------------------------------------------------------------------------

def index_unknown_to_pad(captions, vocab):
    return [[[vocab[START]] + [vocab.get(t, vocab[PAD]) for t in split_sentence(c)] + [vocab[END]] for c in caps]
            for caps in captions]


def index_no_end(captions, vocab):
    return [[c[:-1] for c in caps] for caps in ref.caption_tokens_to_indices(captions, vocab)]


def index_no_start(captions, vocab):
    return [[c[1:] for c in caps] for caps in ref.caption_tokens_to_indices(captions, vocab)]


def index_drops_unknown(captions, vocab):
    return [[[vocab[START]] + [vocab[t] for t in split_sentence(c) if t in vocab] + [vocab[END]] for c in caps]
            for caps in captions]


def index_flat(captions, vocab):
    return [c for caps in ref.caption_tokens_to_indices(captions, vocab) for c in caps]


def index_str_split(captions, vocab):
    return [[[vocab[START]] + [vocab.get(t, vocab[UNK]) for t in c.split()] + [vocab[END]] for c in caps]
            for caps in captions]


INDEXING_MUTANTS = {index_unknown_to_pad: "UNK", index_no_end: "ends with END", index_no_start: "starts with START",
                    index_drops_unknown: "UNK", index_flat: "one per image", index_str_split: "expected"}


@pytest.mark.parametrize("mutant", INDEXING_MUTANTS, ids=lambda f: f.__name__)
def test_indexing_mutant_is_caught(data, mutant):
    captions, vocab = data
    result = Grader().grade_indexing(mutant, captions, vocab)
    assert not result.passed and INDEXING_MUTANTS[mutant] in result.message, result.message


# --- batching ----------------------------------------------------------------------------------

def batch_in_place(batch, pad_idx, max_len=None):
    columns = max(map(len, batch)) if max_len is None else min(max_len, max(map(len, batch)))
    for caption in batch:
        caption.extend([pad_idx] * (columns - len(caption)))
        del caption[columns:]
    return np.array(batch)


def batch_left_padded(batch, pad_idx, max_len=None):
    m = ref.batch_captions_to_matrix(batch, pad_idx, max_len)
    return np.array([[pad_idx] * int(np.sum(r == pad_idx)) + [t for t in r if t != pad_idx] for r in m])


def batch_ignores_max_len(batch, pad_idx, max_len=None):
    return ref.batch_captions_to_matrix(batch, pad_idx)


def batch_max_len_off_by_one(batch, pad_idx, max_len=None):
    return ref.batch_captions_to_matrix(batch, pad_idx, None if max_len is None else max_len - 1 or 1)


def batch_pads_with_zero(batch, pad_idx, max_len=None):
    return ref.batch_captions_to_matrix(batch, 0, max_len)


def batch_always_max_len(batch, pad_idx, max_len=None):
    columns = max_len or max(map(len, batch))
    m = np.full((len(batch), columns), pad_idx)
    for i, c in enumerate(batch):
        m[i, :len(c[:columns])] = c[:columns]
    return m


BATCHING_MUTANTS = {batch_in_place: "changed its input", batch_left_padded: "column 0",
                    batch_ignores_max_len: "shape must be", batch_max_len_off_by_one: "shape must be",
                    batch_pads_with_zero: "pad_idx", batch_always_max_len: "shape must be"}


@pytest.mark.parametrize("mutant", BATCHING_MUTANTS, ids=lambda f: f.__name__)
def test_batching_mutant_is_caught(data, mutant):
    _, vocab = data
    result = Grader().grade_batching(mutant, vocab[PAD])
    assert not result.passed and BATCHING_MUTANTS[mutant] in result.message, result.message


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


# --- generate_batch ----------------------------------------------------------------------------

def gb_first_images(decoder, embeds, captions, batch_size, max_len=None, rng=None):
    rng = rng or np.random.default_rng()
    ix = np.arange(batch_size) % len(embeds)
    chosen = [captions[i][rng.integers(len(captions[i]))] for i in ix]
    return {decoder.img_embeds: embeds[ix], decoder.sentences: ref.batch_captions_to_matrix(chosen, decoder.pad_idx, max_len)}


def gb_first_caption(decoder, embeds, captions, batch_size, max_len=None, rng=None):
    ix = (rng or np.random.default_rng()).integers(0, len(embeds), batch_size)
    return {decoder.img_embeds: embeds[ix],
            decoder.sentences: ref.batch_captions_to_matrix([captions[i][0] for i in ix], decoder.pad_idx, max_len)}


def gb_mismatched(decoder, embeds, captions, batch_size, max_len=None, rng=None):
    rng = rng or np.random.default_rng()
    ix, other = rng.integers(0, len(embeds), batch_size), rng.integers(0, len(embeds), batch_size)
    return {decoder.img_embeds: embeds[ix],
            decoder.sentences: ref.batch_captions_to_matrix([captions[i][0] for i in other], decoder.pad_idx, max_len)}


def gb_ignores_max_len(decoder, embeds, captions, batch_size, max_len=None, rng=None):
    return ref_generate_batch(decoder, embeds, captions, batch_size, None, rng)


def gb_string_keys(decoder, embeds, captions, batch_size, max_len=None, rng=None):
    feed = ref_generate_batch(decoder, embeds, captions, batch_size, max_len, rng)
    return {"img_embeds": feed[decoder.img_embeds], "sentences": feed[decoder.sentences]}


def gb_pads_with_zero(decoder, embeds, captions, batch_size, max_len=None, rng=None):
    ix = (rng or np.random.default_rng()).integers(0, len(embeds), batch_size)
    return {decoder.img_embeds: embeds[ix],
            decoder.sentences: ref.batch_captions_to_matrix([captions[i][-1] for i in ix], 0, max_len)}


GENERATE_BATCH_MUTANTS = {gb_first_images: "draw random image indices", gb_first_caption: "same caption",
                          gb_mismatched: "same images", gb_ignores_max_len: "max_len",
                          gb_string_keys: "exactly the keys", gb_pads_with_zero: "pad_idx=1"}


def test_reference_generate_batch_passes():
    assert Grader().grade_generate_batch(ref_generate_batch).passed


@pytest.mark.parametrize("mutant", GENERATE_BATCH_MUTANTS, ids=lambda f: f.__name__)
def test_generate_batch_mutant_is_caught(mutant):
    result = Grader().grade_generate_batch(mutant)
    assert not result.passed and GENERATE_BATCH_MUTANTS[mutant] in result.message, result.message


# --- validation loss ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", [-0.7, float("-inf"), 0.0, float("nan"), 5.0])
def test_impossible_or_high_validation_losses_fail(tmp_path, value):
    from tests.test_grading import fake_run

    result = Grader().grade_run(fake_run(tmp_path / "run", [value]))
    assert not result.passed and "(0, 1.2)" in result.message, result.message


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


# --- sampler -----------------------------------------------------------------------------------

def step_no_softmax(layers, word, c, h):
    new_h, state = layers.lstm(layers.word_embed(word), LSTMState(c=c, h=h))
    return layers.token_logits(layers.token_logits_bottleneck(new_h)), state.c, new_h


def step_no_bottleneck(layers, word, c, h):
    new_h, state = layers.lstm(layers.word_embed(word), LSTMState(c=c, h=h))
    return tf.nn.softmax(layers.token_logits(new_h)), state.c, new_h


def step_h_as_c(layers, word, c, h):
    probs, _, new_h = reference_one_step(layers, word, c, h)
    return probs, new_h, new_h


def caption_forgets_state(model, image=None, t=1, sample=False, max_len=20, embedding=None, rng=None):
    c0, h0 = model.session.run(model.init_lstm, {model.img_embeds: [embedding]})
    caption = [model.vocab[START]]
    for _ in range(max_len):
        probs, _, _ = model.session.run(model.one_step, {model.current_word: [caption[-1]], model.lstm_c: c0,
                                                          model.lstm_h: h0})
        caption.append(int(np.argmax(probs[0])))
        if caption[-1] == model.vocab[END]:
            break
    return [model.inverse_vocab[i] for i in caption]


def caption_one_word_too_many(model, image=None, t=1, sample=False, max_len=20, embedding=None, rng=None):
    return reference_generate_caption(model, image, t, sample, max_len + 1, embedding, rng)


def caption_without_image(model, image=None, t=1, sample=False, max_len=20, embedding=None, rng=None):
    return reference_generate_caption(model, image, t, sample, max_len, np.zeros_like(embedding), rng)


SAMPLER_MUTANTS = {
    (step_no_softmax, reference_generate_caption): "softmax",
    (step_no_bottleneck, reference_generate_caption): "token_logits_bottleneck",
    (step_h_as_c, reference_generate_caption): "new_c is the state's c",
    (reference_one_step, caption_forgets_state): "expected",
    (reference_one_step, caption_one_word_too_many): "max_len=2",
    (reference_one_step, caption_without_image): "expected",
}


def test_reference_sampler_passes():
    assert Grader().grade_sampler(reference_one_step, reference_generate_caption).passed


@pytest.mark.parametrize("step, caption", SAMPLER_MUTANTS, ids=lambda f: f.__name__)
def test_sampler_mutant_is_caught(step, caption):
    result = Grader().grade_sampler(step, caption)
    assert not result.passed and SAMPLER_MUTANTS[step, caption] in result.message, result.message
