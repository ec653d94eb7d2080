"""The captioning graph: image -> embedding -> LSTM state -> one word at a time.

The course kept the LSTM state in two graph *variables* and assigned them at every step, so
two captions could not be generated at once (and two web visitors would corrupt each other's).
Here the state is *fed* and *returned*: ``init_lstm`` computes it from the image, ``one_step``
takes (current_word, lstm_c, lstm_h) and returns (probabilities, new c, new h). Nothing in the
graph changes while captioning, so one model serves any number of threads.

Captioning a batch runs inside the graph (``capstone.fast.decoding``): ``greedy_tokens`` (greedy
or sampled at a temperature) and ``beam_tokens`` are built once, and ``captions``/``beam_captions``
make one Session.run per batch. Plain Python loops over ``one_step`` live in
tests/decoding_oracle.py, which the tests check the in-graph decoders against.

Two inputs are possible, chosen when the model is built:
* ``img_embeds`` [B, IMG_EMBED]: precomputed CNN embeddings (the course's pickles);
* ``input_images`` [B, S, S, 3]: raw RGB pixels in [0, 255]; a frozen CNN encoder
  (``capstone.encoders``) is imported in front, so one Session.run goes from pixels to state.
"""

import numpy as np
import tensorflow as tf

from capstone.captions import END, PAD, START, UNK, indices_to_caption
from capstone.config import (BEAM_SIZE, LENGTH_ALPHA, MAX_LEN, NO_REPEAT_NGRAM, check_beam_size,
                             check_length_alpha, check_max_len, check_no_repeat_ngram, check_temperature)
from capstone.decoder import SCOPE, initial_state, make_layers
from capstone.errors import CapstoneError
from capstone.attention.layers import attention_step_for, make_attention_layers, squeeze_features
from capstone.attention.layers import initial_state as attention_initial_state
from capstone.fast.decoding import beam_decode, greedy_decode, show_and_tell_step
from capstone.fast.ensemble import check_member, ensemble_step_for
from capstone.layers import LSTMState
from capstone.support import run_dir as runs
from capstone.support.precision import BFLOAT16, FLOAT32, check_precision, set_graph_precision
from capstone.support.tf_session import make_session

v1 = tf.compat.v1


class FinalModel:
    """Restores a trained decoder from a run directory into a small inference graph.

    Args:
      run: a ``capstone.support.run_dir.Run`` (see ``FinalModel.load``).
      checkpoint: checkpoint prefix; default the run's best one.
      encoder: a ``capstone.encoders.FrozenEncoder`` to take raw images, or None for embeddings.
      precision: "float32" or "bfloat16" (``capstone.support.precision.resolve`` of --precision): the
        decoder's matmuls by explicit casts; the frozen encoder's by oneDNN's bfloat16 rewrite.
      ensemble: more runs (``Run``s, each restored from its best checkpoint) whose decoders vote
        with this one's in ``captions``/``beam_captions``: same vocabulary, decoder kind and encoder.
        The course's one-word API (``init_lstm``, ``one_step``, ``step``) stays this run's alone.
    """

    def __init__(self, run, checkpoint=None, encoder=None, precision=FLOAT32, ensemble=()):
        self.run = run
        self.ensemble = tuple(ensemble)
        for member in self.ensemble:
            check_member(run, member)
        self.vocab = run.vocab
        self.inverse_vocab = run.inverse_vocab
        self.model_config = run.model_config
        self.encoder = encoder
        self.precision = check_precision(precision, "FinalModel")
        self.graph = tf.Graph()
        with self.graph.as_default():
            set_graph_precision(precision)
            self.build_inputs()
            self.build_decoding_inputs()
            with v1.variable_scope(SCOPE):
                self.build_layers()
                self.build_init_lstm()
                self.build_one_step()
                self.build_ensemble()
                self.build_greedy_decoder()
                self.build_beam_decoder()
            members = [f"{SCOPE}/{member_scope(j)}/" for j in range(1, len(self.ensemble) + 1)]
            saver = v1.train.Saver([v for v in v1.global_variables(scope=SCOPE)
                                    if not any(v.op.name.startswith(m) for m in members)])
            # Each member's variables under the names its own checkpoint has (decoder/..., as trained).
            member_savers = [v1.train.Saver({f"{SCOPE}/" + v.op.name[len(m):]: v for v in v1.global_variables(scope=m)})
                             for m in members]
        self.graph.finalize()  # nothing may add ops later: that is what makes sharing across threads safe
        self.session = make_session(self.graph, bfloat16_rewrite=encoder is not None and precision == BFLOAT16)
        runs.restore(saver, self.session, checkpoint or runs.best_checkpoint(run.path))
        for member, member_saver in zip(self.ensemble, member_savers):
            runs.restore(member_saver, self.session, runs.best_checkpoint(member.path))

    @classmethod
    def load(cls, run_path, checkpoint=None, with_encoder=False, encoder_weights="imagenet", precision=FLOAT32,
             ensemble=()):
        """A model from a run directory; ``with_encoder`` adds the run's image encoder in front;
        ``ensemble``: more run directories whose decoders vote with this one's."""
        run = runs.load_run(run_path)
        ensemble = [runs.load_run(path) for path in ensemble]
        encoder = None
        if with_encoder:
            if not run.encoder:
                raise CapstoneError(
                    f"{run_path}: config.json names no image encoder (trained on embeddings of unknown origin); "
                    f"caption precomputed embeddings with --embeds/--fns instead")
            from capstone.encoders import frozen_encoder  # TF+Keras CNN: only loaded when images are given
            encoder = frozen_encoder(run.encoder, weights=encoder_weights)
        return cls(run, checkpoint=checkpoint, encoder=encoder, precision=precision, ensemble=ensemble)

    # -- graph ---------------------------------------------------------------------------------

    @property
    def attends(self):
        """True for a Show, Attend and Tell run: its image input is a grid of features."""
        return self.model_config.decoder == "attention"

    def build_inputs(self):
        """Inputs: none.
        Outputs: img_embeds [B, IMG_EMBED] (attention: the feature grid [B, G, G, IMG_EMBED]); with an
          encoder also input_images [B, S, S, 3] (pixels 0..255) from which img_embeds is computed
          by the imported frozen CNN.
        """
        depth = self.model_config.img_embed_size
        if self.encoder is None:
            self.input_images = None
            shape = [None, None, None, depth] if self.attends else [None, depth]
            self.img_embeds = v1.placeholder(tf.float32, shape, name="img_features" if self.attends else "img_embeds")
            return
        if self.encoder.embed_size != self.model_config.img_embed_size:
            raise CapstoneError(
                f"encoder {self.encoder.name} gives {self.encoder.embed_size}-d embeddings but the decoder in "
                f"{self.run.path} was trained on {self.model_config.img_embed_size}-d ones")
        from capstone.encoders import import_encoder
        size = self.encoder.image_size
        self.input_images = v1.placeholder(tf.float32, [None, size, size, 3], name="input_images")
        self.img_embeds = import_encoder(self.encoder, self.input_images, spatial=self.attends)

    def build_decoding_inputs(self):
        """Inputs: none.
        Outputs: the decoders' settings, fed per call (defaults in ``capstone.config``):
          max_len [] int32, sample [] bool, temperature [] float32, sample_seed [2] int64,
          beam_size [] int32, length_alpha [] float64, no_repeat_ngram [] int32.
        """
        self.max_len = v1.placeholder_with_default(MAX_LEN, [], name="max_len")
        self.sample = v1.placeholder_with_default(False, [], name="sample")
        self.temperature = v1.placeholder_with_default(1.0, [], name="temperature")
        self.sample_seed = v1.placeholder_with_default(tf.constant([0, 0], tf.int64), [2], name="sample_seed")
        self.beam_size = v1.placeholder_with_default(BEAM_SIZE, [], name="beam_size")
        self.length_alpha = v1.placeholder_with_default(tf.constant(LENGTH_ALPHA, tf.float64), [], name="length_alpha")
        self.no_repeat_ngram = v1.placeholder_with_default(NO_REPEAT_NGRAM, [], name="no_repeat_ngram")

    def build_layers(self):
        """Inputs: img_embeds.
        Outputs: layers (the run's decoder's, with the training graph's variable names); step_for,
          the one-word step the decoders run (``capstone.fast.decoding``); n_locations, the image
          locations a word attends to (0 for the course decoder).
        """
        self.layers, self.step_for, self.features = decoder_on(self.img_embeds, self.model_config, len(self.vocab))
        self.n_locations = tf.shape(self.features)[1] if self.attends else 0

    def build_init_lstm(self):
        """Inputs: img_embeds.
        Outputs: init_lstm = (init_c, init_h) [B, LSTM_UNITS], the state before the first word
          (``capstone.decoder.initial_state``, as in training; attention: from the mean feature).
        """
        self.init_lstm = tuple(decoder_initial_state(self.layers, self.features, self.attends))

    def build_one_step(self):
        """Inputs: current_word [B] int32, lstm_c and lstm_h [B, LSTM_UNITS] (fed, not stored);
          attention: img_embeds too (each word looks at the image again).
        Outputs: one_step = (new_probs [B, vocab], new_c, new_h); attention_weights [B, L].
        """
        units = self.model_config.lstm_units
        self.current_word = v1.placeholder(tf.int32, [None], name="current_word")
        self.lstm_c = v1.placeholder(tf.float32, [None, units], name="lstm_c")
        self.lstm_h = v1.placeholder(tf.float32, [None, units], name="lstm_h")
        logits, new_state, self.attention_weights = self.step_for(1)(                 # [B, vocab], [B, L]
            self.current_word, LSTMState(self.lstm_c, self.lstm_h))
        self.new_probs = tf.nn.softmax(logits)
        self.one_step = (self.new_probs, new_state.c, new_state.h)

    def build_ensemble(self):
        """Inputs: img_embeds, step_for, init_lstm; the ensemble's runs.
        Outputs: decode_step_for and decode_state, the step and initial state the greedy and beam
          decoders run: step_for and init_lstm without an ensemble; with one, each member's decoder
          (variables under decoder/member1/, decoder/member2/, ...) and its initial state, mixed by
          ``capstone.fast.ensemble.ensemble_step_for`` (the state: the tuple of the members' states);
          first_word_probs [B, vocab], what they give each caption's first word.
        """
        self.decode_step_for, self.decode_state = self.step_for, LSTMState(*self.init_lstm)
        if self.ensemble:
            step_fors, states = [self.step_for], [self.decode_state]
            for j, member in enumerate(self.ensemble, start=1):
                with v1.variable_scope(member_scope(j)):
                    layers, step_for, features = decoder_on(self.img_embeds, member.model_config, len(self.vocab))
                    step_fors.append(step_for)
                    states.append(decoder_initial_state(layers, features, self.attends))
            self.decode_step_for, self.decode_state = ensemble_step_for(step_fors), tuple(states)
        start = tf.fill(tf.shape(self.img_embeds)[:1], self.vocab[START])                     # [B]
        self.first_word_probs = tf.nn.softmax(self.decode_step_for(1)(start, self.decode_state)[0])

    def build_greedy_decoder(self):
        """Inputs: decode_step_for, decode_state; max_len, sample, temperature, sample_seed, no_repeat_ngram.
        Outputs: greedy_tokens = (tokens [B, steps] int32, lengths [B] int32), see
          ``capstone.fast.decoding.greedy_decode``.
        """
        tokens, lengths, self.greedy_attention = greedy_decode(
            self.decode_step_for, self.decode_state, len(self.vocab), self.vocab[START],
            self.vocab[END], self.banned_tokens, self.max_len, self.sample, self.temperature, self.sample_seed,
            self.no_repeat_ngram)
        self.greedy_tokens = (tokens, lengths)

    def build_beam_decoder(self):
        """Inputs: decode_step_for, decode_state; max_len, beam_size, length_alpha, no_repeat_ngram.
        Outputs: beam_tokens = (tokens [B, K, max_len], lengths [B, K], scores [B, K]), see
          ``capstone.fast.decoding.beam_decode``.
        """
        tokens, lengths, scores, self.beam_attention = beam_decode(
            self.decode_step_for, self.decode_state, len(self.vocab), self.vocab[START],
            self.vocab[END], self.banned_tokens, self.beam_size, self.max_len, self.length_alpha, self.n_locations,
            self.no_repeat_ngram)
        self.beam_tokens = (tokens, lengths, scores)

    # -- running it ----------------------------------------------------------------------------

    def _input_feed(self, images=None, embeddings=None):
        if (images is None) == (embeddings is None):
            raise CapstoneError("give either images or embeddings")
        if images is not None:
            if self.input_images is None:
                raise CapstoneError("this model was loaded without an image encoder; pass embeddings, "
                                    "or load it with with_encoder=True")
            return {self.input_images: np.asarray(images, dtype=np.float32)}
        embeddings = np.asarray(embeddings, dtype=np.float32)
        expected = self.expected_embedding_shape()
        if embeddings.ndim != len(expected) + 1 or any(e is not None and e != got
                                                      for e, got in zip(expected, embeddings.shape[1:])):
            raise CapstoneError(
                f"embeddings: the {self.model_config.decoder} decoder of {self.run.path} (encoder "
                f"{self.run.encoder or 'unknown'}) expects shape [N, {', '.join(str(e or '?') for e in expected)}], "
                f"got {list(embeddings.shape)}")
        return {self.img_embeds: embeddings}

    def expected_embedding_shape(self):
        """Per image: (D,) pooled, or (G, G, D) spatial, G of the run's encoder (any G when the model
        has its own encoder in front: it made the grids it is given)."""
        depth = self.model_config.img_embed_size
        if not self.attends:
            return (depth,)
        grid = None
        if self.encoder is None:
            from capstone.encoders import ENCODERS  # a table of sizes; loads no network
            grid = ENCODERS[self.run.encoder].grid if self.run.encoder in ENCODERS else None
        return (grid, grid, depth)

    def initial_state(self, images=None, embeddings=None):
        """(c, h) for a batch of images (pixels) or embeddings."""
        return self.session.run(self.init_lstm, self._input_feed(images, embeddings))

    def step(self, words, state, images=None, embeddings=None):
        """One word for every row: words [B], state (c, h) -> (probs [B, vocab], (c', h')).

        The attention decoder looks at the image at every word: give its images or embeddings too.
        """
        feed = {self.current_word: np.asarray(words, dtype=np.int32), self.lstm_c: state[0], self.lstm_h: state[1]}
        if self.attends:
            feed.update(self._input_feed(images, embeddings))
        probs, c, h = self.session.run(self.one_step, feed)
        return probs, (c, h)

    def first_word_probabilities(self, images=None, embeddings=None):
        """[B, vocab]: how likely each word is to begin each image's caption (the ensemble's, if any)."""
        return self.session.run(self.first_word_probs, self._input_feed(images, embeddings))

    def attention_maps(self, images=None, embeddings=None, beam_size=0, max_len=MAX_LEN, length_alpha=LENGTH_ALPHA,
                       no_repeat_ngram=NO_REPEAT_NGRAM):
        """For each image, [(word, weights [G, G])] of its greedy (or best beam) caption, END excluded:
        where the attention decoder looked for each word (the caption ``captions``/``beam_captions``
        give with the same settings). One Session.run for the batch."""
        if not self.attends:
            raise CapstoneError(f"{self.run.path}: a {self.model_config.decoder} decoder has no attention maps; "
                                f"train with --decoder attention")
        feed = self._input_feed(images, embeddings)
        feed.update({self.max_len: check_max_len(max_len),
                     self.no_repeat_ngram: check_no_repeat_ngram(no_repeat_ngram)})
        if beam_size:
            feed.update({self.beam_size: check_beam_size(beam_size),
                         self.length_alpha: check_length_alpha(length_alpha)})
            (tokens, lengths, _), weights = self.session.run([self.beam_tokens, self.beam_attention], feed)
            tokens, lengths, weights = tokens[:, 0], lengths[:, 0], weights[:, 0]  # the best beam, END not in it
        else:
            (tokens, lengths), weights = self.session.run([self.greedy_tokens, self.greedy_attention], feed)
        grid = int(round(np.sqrt(weights.shape[-1])))
        end = self.vocab[END]
        return [[(self.inverse_vocab[int(t)], w.reshape(grid, grid)) for t, w in zip(row[:n], row_w[:n]) if t != end]
                for row, n, row_w in zip(tokens, lengths, weights)]

    @property
    def banned_tokens(self):
        """Never emitted: PAD and START are never targets, and a caption that says #UNK# (or
        silently drops it) is worse than one that picks the best real word."""
        return [self.vocab[token] for token in (PAD, UNK, START) if token in self.vocab]

    def sample_tokens(self, images=None, embeddings=None, temperature=1.0, sample=False, max_len=MAX_LEN, rng=None,
                      no_repeat_ngram=NO_REPEAT_NGRAM):
        """Greedy (or temperature-sampled) token ids for a batch, in one Session.run.

        Returns a list of index lists without START; each ends at END or after max_len words.
        Sampling draws from a seed taken from ``rng`` (a numpy Generator; None: a fresh one),
        so the same rng state gives the same captions. no_repeat_ngram: no n-gram of that many
        words twice in a caption (0: no such rule).
        """
        temperature = check_temperature(temperature)
        feed = self._input_feed(images, embeddings)
        max_len = check_max_len(max_len)
        rows = len(next(iter(feed.values())))
        if rows == 0 or max_len == 0:
            return [[] for _ in range(rows)]
        feed.update({self.max_len: max_len, self.no_repeat_ngram: check_no_repeat_ngram(no_repeat_ngram)})
        if sample:
            rng = rng if rng is not None else np.random.default_rng()
            feed.update({self.sample: True, self.temperature: temperature,
                         self.sample_seed: rng.integers(0, 2 ** 62, size=2)})
        tokens, lengths = self.session.run(self.greedy_tokens, feed)
        return [row[:n].tolist() for row, n in zip(tokens, lengths)]

    def captions(self, images=None, embeddings=None, temperature=1.0, sample=False, max_len=MAX_LEN, rng=None,
                 no_repeat_ngram=NO_REPEAT_NGRAM):
        """Caption text for each image/embedding of a batch."""
        return [indices_to_caption(ids, self.inverse_vocab)
                for ids in self.sample_tokens(images, embeddings, temperature, sample, max_len, rng, no_repeat_ngram)]

    def beam_captions(self, images=None, embeddings=None, beam_size=BEAM_SIZE, max_len=MAX_LEN,
                      length_alpha=LENGTH_ALPHA, no_repeat_ngram=NO_REPEAT_NGRAM):
        """For each image, the ``beam_size`` best (caption text, score) pairs, best first."""
        return [[(indices_to_caption(tokens, self.inverse_vocab), score) for tokens, score in found]
                for found in self.beam_search_tokens(images, embeddings, beam_size, max_len, length_alpha,
                                                     no_repeat_ngram)]

    def beam_search_tokens(self, images=None, embeddings=None, beam_size=BEAM_SIZE, max_len=MAX_LEN,
                           length_alpha=LENGTH_ALPHA, no_repeat_ngram=NO_REPEAT_NGRAM):
        """For each image, the ``beam_size`` best (token ids without START/END, score), best first.

        One Session.run for the whole batch (``beam_tokens``).
        """
        beam_size = check_beam_size(beam_size)
        feed = self._input_feed(images, embeddings)
        rows = len(next(iter(feed.values())))
        if rows == 0:
            return []
        feed.update({self.beam_size: beam_size, self.max_len: check_max_len(max_len),
                     self.length_alpha: check_length_alpha(length_alpha),
                     self.no_repeat_ngram: check_no_repeat_ngram(no_repeat_ngram)})
        tokens, lengths, scores = self.session.run(self.beam_tokens, feed)
        return [[(tokens[b, k, :lengths[b, k]].tolist(), float(scores[b, k]))
                 for k in range(scores.shape[1]) if np.isfinite(scores[b, k])] for b in range(rows)]

    def close(self):
        self.session.close()


def member_scope(j):
    """The variable scope (under decoder/) of an ensemble's j-th extra member, j = 1, 2, ..."""
    return f"member{j}"


def decoder_on(img_embeds, model_config, vocab_size):
    """A decoder's layers on img_embeds, its variables created now in the current variable scope.

    Returns (layers, step_for, features): attention decoders also squeeze the feature grid
    [B, G, G, D] into features [B, L, F] (``squeeze_features``); the course decoder's features
    are img_embeds itself.
    """
    if model_config.decoder == "attention":
        layers = make_attention_layers(vocab_size, model_config)
        features = squeeze_features(layers, img_embeds)                                # [B, L, F]
        return layers, attention_step_for(layers, features), features
    layers = make_layers(vocab_size, model_config)
    return layers, show_and_tell_step(layers), img_embeds


def decoder_initial_state(layers, features, attends):
    """LSTMState before the first word: from the mean feature (attention) or the image embedding."""
    return attention_initial_state(layers, features) if attends else initial_state(layers, features)


def generate_caption(model, image=None, t=1, sample=False, max_len=MAX_LEN, embedding=None, rng=None):
    """The course's function: tokens of one caption, START and END included.

    ``' '.join(generate_caption(model, image)[1:-1])`` is the caption text. ``image`` is one
    [S, S, 3] array of pixels (the model needs an encoder), or pass ``embedding`` [IMG_EMBED].
    ``t`` is the sampling temperature (the course's name).
    """
    images = None if image is None else np.asarray(image)[None]
    embeddings = None if embedding is None else np.asarray(embedding)[None]
    ids = model.sample_tokens(images, embeddings, temperature=t, sample=sample, max_len=max_len, rng=rng)[0]
    tokens = [START] + [model.inverse_vocab[i] for i in ids]
    return tokens if tokens[-1] == END else tokens + [END]
