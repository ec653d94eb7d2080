"""The course's ``final_model`` with the learner's one-step sampler, and the check of the sampler.

``SamplerModel`` is the given part of the course's sampler: a small graph that restores the
trained decoder's layers, computes the LSTM state from an image (``init_lstm``) and runs the
learner's ``one_step_fn(layers, current_word, lstm_c, lstm_h) -> (new_probs, new_c, new_h)``.
The state is fed and returned, never stored in the graph.

The check runs on a fixed trained model (a small decoder trained here, once per process, on
the built-in shapes problem) and compares with the package's ``FinalModel``: the learner's
probabilities and states step by step, then the learner's greedy captions word by word.
"""

import os
import tempfile

import numpy as np

from capstone.captions import END, START
from capstone.errors import CapstoneError
from capstone.grading.common import Mismatch, NotDone, call_learner, guarded

N_CAPTIONS = 10  # greedy captions compared with the reference's
_FIXED = {}      # the fixed trained model, trained once per process


class SamplerModel:
    """init_lstm = (c, h) from img_embeds (or input_images with an encoder); one_step from one_step_fn.

    Attributes the sampler reads: session, vocab, inverse_vocab, img_embeds, input_images (None without
    an encoder), init_lstm, current_word [B], lstm_c, lstm_h [B, LSTM_UNITS], one_step.
    """

    def __init__(self, checkpoint, vocab, config, one_step_fn, encoder=None):
        import tensorflow as tf

        from capstone.decoder import SCOPE, make_layers
        from capstone.support import run_dir as runs
        from capstone.support.tf_session import make_session

        v1 = tf.compat.v1
        self.vocab, self.config, self.encoder = vocab, config, encoder
        self.inverse_vocab = {index: token for token, index in vocab.items()}
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.input_images = None
            if encoder is None:
                self.img_embeds = v1.placeholder(tf.float32, [None, config.img_embed_size], name="img_embeds")
            else:
                from capstone.encoders import import_encoder

                size = encoder.image_size
                self.input_images = v1.placeholder(tf.float32, [None, size, size, 3], name="input_images")
                self.img_embeds = import_encoder(encoder, self.input_images)
            with v1.variable_scope(SCOPE):
                self.layers = make_layers(len(vocab), config)
                bottleneck = self.layers.img_embed_to_bottleneck(self.img_embeds)
                init_h = self.layers.img_embed_bottleneck_to_h0(bottleneck)     # [B, LSTM_UNITS]
                self.init_lstm = (init_h, init_h)                                 # (c, h): c0 = h0
                self.current_word = v1.placeholder(tf.int32, [None], name="current_word")
                self.lstm_c = v1.placeholder(tf.float32, [None, config.lstm_units], name="lstm_c")
                self.lstm_h = v1.placeholder(tf.float32, [None, config.lstm_units], name="lstm_h")
                self.one_step = tuple(one_step_fn(self.layers, self.current_word, self.lstm_c, self.lstm_h))
            saver = v1.train.Saver(v1.global_variables(scope=SCOPE))
        self.session = make_session(self.graph)
        runs.restore(saver, self.session, checkpoint)

    def close(self):
        self.session.close()


def reference_one_step(layers, current_word, lstm_c, lstm_h):
    """The course's one step: word -> embedding -> LSTM -> bottleneck -> logits -> probabilities."""
    import tensorflow as tf

    from capstone.layers import LSTMState

    word_embed = layers.word_embed(current_word)                              # [B, WORD_EMBED]
    new_h, new_state = layers.lstm(word_embed, LSTMState(c=lstm_c, h=lstm_h))
    new_logits = layers.token_logits(layers.token_logits_bottleneck(new_h))   # [B, vocab]
    return tf.nn.softmax(new_logits), new_state.c, new_h


def fixed_model():
    """(run_dir, val_embeds) of a small decoder trained on the built-in shapes problem, once per process."""
    if "run_dir" not in _FIXED:
        import dataclasses

        from capstone.grading.problem import builtin_configs, builtin_problem
        from capstone.training import train

        (train_embeds, train_captions), (val_embeds, _) = builtin_problem(n_train=300, n_val=N_CAPTIONS, seed=7)
        model_config, training_config = builtin_configs()
        training_config = dataclasses.replace(training_config, n_epochs=3, n_batches_per_epoch=60)
        _FIXED["tmp"] = tempfile.TemporaryDirectory(prefix="capstone-grading-sampler-")  # removed at exit
        run_dir = os.path.join(_FIXED["tmp"].name, "run")
        train(run_dir, train_embeds, train_captions, model_config=model_config, training_config=training_config,
              progress=False, log=lambda *_: None)
        _FIXED["run_dir"], _FIXED["val_embeds"] = run_dir, val_embeds
    return _FIXED["run_dir"], _FIXED["val_embeds"]


def _words(tokens):
    """The words of a caption: without START and the END that closes it."""
    tokens = list(tokens)
    if tokens[:1] == [START]:
        tokens = tokens[1:]
    return tokens[:tokens.index(END)] if END in tokens else tokens


def _one_step_hint(got, want):
    probs, c, h = (np.asarray(x) for x in got)
    if probs.shape != want[0].shape:
        return f"new_probs must be [batch, vocabulary size] = {want[0].shape}, received {probs.shape}"
    if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        return "new_probs are probabilities: tf.nn.softmax of token_logits(token_logits_bottleneck(new_h))"
    if not np.allclose(c, want[1], atol=1e-4) and np.allclose(c, want[2], atol=1e-4):
        return "lstm(x, state) returns (new_h, LSTMState(new_c, new_h)): new_c is the state's c"
    if not (np.allclose(c, want[1], atol=1e-4) and np.allclose(h, want[2], atol=1e-4)):
        return ("the new state is lstm(word_embed(current_word), LSTMState(c=lstm_c, h=lstm_h)) -- the word's "
                "embedding and the state that was fed in")
    return "new_probs = softmax(token_logits(token_logits_bottleneck(new_h))), both layers, in that order"


def check_sampler(one_step_fn, generate_caption_fn):
    """The learner's one step and greedy captions vs the package's FinalModel on the fixed model."""
    from capstone.final_model import FinalModel, generate_caption
    from capstone.support import run_dir as runs

    _probe_one_step(one_step_fn)  # not done yet? then no model needs training
    run_dir, embeds = fixed_model()
    run = runs.load_run(run_dir)
    checkpoint = runs.best_checkpoint(run_dir)
    package = FinalModel.load(run_dir)
    wanted = [_words(generate_caption(package, embedding=e)) for e in embeds]
    package.close()
    expected = f"{len(wanted)} greedy captions as FinalModel's, e.g. {' '.join(wanted[0])!r}"
    given = SamplerModel(checkpoint, run.vocab, run.model_config, reference_one_step)
    try:
        try:
            learner = SamplerModel(checkpoint, run.vocab, run.model_config, one_step_fn)
        except NotImplementedError:
            raise NotDone("one_step") from None
        except (CapstoneError, ValueError, TypeError) as error:
            raise Mismatch(expected, type(error).__name__, f"building one_step failed: {str(error)[:200]}; it takes "
                                                           f"(layers, current_word, lstm_c, lstm_h) and returns "
                                                           f"(new_probs, new_c, new_h), using the decoder's layers as the "
                                                           f"decoder does (token_logits after token_logits_bottleneck: "
                                                           f"a skipped layer changes the variables' shapes)") from None
        try:
            _compare_variables(given, learner, expected)
            _compare_steps(given, learner, embeds, expected)
            captions = _check_generate_caption(generate_caption_fn, given, embeds, wanted, expected)
            full = [_words(call_learner(expected, "generate_caption(your model, embedding=...)", generate_caption_fn,
                                        learner, embedding=e)) for e in embeds[:3]]
        finally:
            learner.close()
    finally:
        given.close()
    if full != wanted[:3]:
        raise Mismatch(expected, [" ".join(w) for w in full], "your generate_caption on your one_step differs from the "
                                                              "reference although each passed alone")
    return expected, f"{len(captions)} equal captions", (f"one_step matches the reference's probabilities and state; "
                                                         f"{len(captions)} greedy captions equal FinalModel's, e.g. "
                                                         f"{' '.join(captions[0])!r}")


def _probe_one_step(one_step_fn):
    """NotDone when one_step_fn still raises NotImplementedError (tried on a scratch graph)."""
    import tensorflow as tf

    from capstone.config import ModelConfig
    from capstone.decoder import make_layers

    v1 = tf.compat.v1
    with tf.Graph().as_default():
        layers = make_layers(10, ModelConfig(img_embed_size=4, img_embed_bottleneck=3, word_embed_size=5,
                                             lstm_units=6, logit_bottleneck=7))
        try:
            one_step_fn(layers, v1.placeholder(tf.int32, [None]), v1.placeholder(tf.float32, [None, 6]),
                        v1.placeholder(tf.float32, [None, 6]))
        except NotImplementedError:
            raise NotDone("one_step") from None
        except Exception:  # noqa: BLE001 - other errors are reported, with context, by the real check
            pass


def _compare_variables(given, learner, expected):
    """Each layer one_step used must have the trained decoder's variable shapes."""
    for name, layer in learner.layers._asdict().items():
        for attribute in ("kernel", "bias", "embeddings", "input_kernel", "recurrent_kernel"):
            variable = getattr(layer, attribute, None)
            want = getattr(getattr(given.layers, name), attribute, None)
            if variable is not None and want is not None and variable.shape != want.shape:
                raise Mismatch(expected, f"{name}.{attribute} {variable.shape}",
                               f"one_step made {name}.{attribute} with shape {variable.shape}, but the trained decoder's "
                               f"is {want.shape}: use the layers as the decoder does (token_logits after "
                               f"token_logits_bottleneck, the word's embedding into the lstm)")


def _compare_steps(given, learner, embeds, expected):
    c, h = given.session.run(given.init_lstm, {given.img_embeds: embeds[:4]})
    words = np.array([given.vocab[START], 5, 6, given.vocab[END]], np.int32) % len(given.vocab)
    for step in range(3):
        want = given.session.run(given.one_step, {given.current_word: words, given.lstm_c: c, given.lstm_h: h})
        feed = {learner.current_word: words, learner.lstm_c: c, learner.lstm_h: h}
        got = guarded(expected, "session.run(one_step)", learner.session.run, learner.one_step, feed)
        if len(got) != 3 or not all(np.shape(g) == np.shape(w) and np.allclose(g, w, atol=1e-4)
                                    for g, w in zip(got, want)):
            received = [np.shape(g) for g in got]
            raise Mismatch(expected, received, f"one_step step {step + 1} on 4 images: expected (new_probs "
                                               f"{want[0].shape}, new_c, new_h) as the reference, received "
                                               f"{len(got)} outputs of shapes {received} that differ; "
                                               f"{_one_step_hint(got, want) if len(got) == 3 else 'return 3 tensors'}")
        _, c, h = want
        words = want[0].argmax(axis=1).astype(np.int32)


def _check_generate_caption(generate_caption_fn, given, embeds, wanted, expected):
    captions = []
    for index, (embedding, words) in enumerate(zip(embeds, wanted)):
        call = f"generate_caption(model, embedding=validation embedding {index})"
        tokens = call_learner(expected, call, generate_caption_fn, given, embedding=embedding)
        if not isinstance(tokens, (list, tuple)) or not tokens or tokens[0] != START:
            raise Mismatch(expected, repr(tokens)[:80], f"{call} returns the caption's tokens (strings), starting "
                                                        f"with {START}: [vocab_inverse[i] for i in caption]")
        got = _words(tokens)
        if got != words:
            raise Mismatch(expected, " ".join(map(str, got)), f"{call}: expected {' '.join(words)!r}, received "
                                                              f"{' '.join(map(str, got))!r}; {_caption_hint(got, words)}")
        captions.append(got)
    short = call_learner(expected, "generate_caption(..., max_len=2)", generate_caption_fn, given,
                         embedding=embeds[0], max_len=2)
    if len(_words(short)) > 2 or _words(short) != wanted[0][:2]:
        raise Mismatch(expected, short, f"generate_caption(..., max_len=2) returned {short}: at most max_len words "
                                        f"after START, the first ones of the greedy caption")
    sampled = call_learner(expected, "generate_caption(..., sample=True, t=1)", generate_caption_fn, given,
                           embedding=embeds[0], sample=True, rng=np.random.default_rng(0))
    if not sampled or sampled[0] != START or not all(token in given.vocab for token in sampled):
        raise Mismatch(expected, sampled, "generate_caption(..., sample=True) must return vocabulary tokens from START")
    return captions


def _caption_hint(got, words):
    if not got:
        return "nothing after START: feed each chosen word back as current_word and stop only at END"
    if len(set(got)) == 1 and len(got) > 1:
        return "the same word again and again: feed the LSTM state returned by one_step back in"
    if len(got) > len(words) and got[:len(words)] == words:
        return "it went on after END: stop when the chosen word is END"
    return ("start from model.init_lstm for this image, then at each step feed (last word, c, h) to one_step; "
            "greedy = np.argmax of the probabilities (with temperature p ** (1 / t), renormalised)")


def reference_generate_caption(model, image=None, t=1, sample=False, max_len=20, embedding=None, rng=None):
    """The course's loop on a SamplerModel: tokens from START, one_step per word, until END or max_len words."""
    rng = rng if rng is not None else np.random.default_rng()
    feed = {model.input_images: [image]} if image is not None else {model.img_embeds: [embedding]}
    c, h = model.session.run(model.init_lstm, feed)
    caption = [model.vocab[START]]
    for _ in range(max_len):
        probs, c, h = model.session.run(model.one_step, {model.current_word: [caption[-1]], model.lstm_c: c,
                                                         model.lstm_h: h})
        probs = probs[0].astype(np.float64) ** (1 / t)
        probs /= probs.sum()
        next_word = int(rng.choice(len(probs), p=probs)) if sample else int(np.argmax(probs))
        caption.append(next_word)
        if next_word == model.vocab[END]:
            break
    return [model.inverse_vocab[index] for index in caption]
