"""Mutation tests of generate_batch, the validation losses of a run and the sampler (one_step,
generate_caption): each wrong implementation caught by the grader with a useful message, on the
grader's own problems. The reference passes everything."""

import numpy as np
import pytest
import tensorflow as tf

from capstone import captions as ref
from capstone.captions import END, START
from capstone.grading import Grader
from capstone.grading.sampler import reference_generate_caption, reference_one_step
from capstone.layers import LSTMState
from capstone.training import generate_batch as ref_generate_batch


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
