"""Several trained decoders as one: at every word, the (geometric) mean of their next-word probabilities.

Decoders trained from different seeds or settings make different mistakes, so averaging what
they predict picks the words they agree on. Show and Tell's competition entry and most
captioning papers since report such ensembles; they cost one decoder step per member and no
training.

``ensemble_step_for`` turns the members' step functions into one step function of the shape
``capstone.fast.decoding`` expects, so greedy, sampled and beam-search decoding of an ensemble
are the very loops a single decoder runs. The state it carries is the tuple of the members'
states: each member keeps its own LSTM, and beam search reorders all of them together.
"""

import tensorflow as tf

from capstone.errors import CapstoneError


def ensemble_log_probs(member_logits):
    """log of the members' normalised geometric mean probability [N, vocab], from M tensors [N, vocab]
    of logits: log_softmax(mean_m log_softmax(logits_m)).

    A word needs every member's support: one member finding it unlikely pulls it down, where in
    the arithmetic mean (a mixture) one confident member could carry it. Measured on Flickr8k
    (500 validation photos, five self-critically trained decoders, beam 3): CIDEr 0.570 against the
    mixture's 0.564, higher on each of three ensembles (bench/QUALITY.md). The result is a valid
    "logits" for the decoders: its softmax is the ensemble's distribution itself.
    """
    log_probs = tf.stack([tf.nn.log_softmax(logits) for logits in member_logits])   # [M, N, vocab]
    return tf.nn.log_softmax(tf.reduce_mean(log_probs, axis=0))


def ensemble_step_for(member_step_fors):
    """``step_for`` of an ensemble, from the members' ``step_for`` functions (all on one vocabulary).

    step_for(rows_per_image, allowed=None) is
    step(words [N], states) -> (``ensemble_log_probs`` [N, vocab], new states, weights [N, L]), where
    states is a tuple holding each member's state (its initial value: ``tuple`` of the members'
    initial states) and weights is the members' mean attention over L image locations (all
    members look at the same images: the same L, or 0 for Show and Tell decoders).
    """
    member_step_fors = tuple(member_step_fors)
    if not member_step_fors:
        raise ValueError("an ensemble needs at least one decoder")

    def step_for(rows_per_image, allowed=None):
        steps = [member(rows_per_image, allowed) for member in member_step_fors]

        def step(words, states):
            outputs = [member_step(words, state) for member_step, state in zip(steps, states)]
            logits, new_states, weights = zip(*outputs)
            return ensemble_log_probs(logits), tuple(new_states), tf.add_n(weights) / len(weights)
        return step
    return step_for


def check_member(run, member):
    """A decoder can vote with ``run``'s (``capstone.support.run_dir.Run``s) only if it reads the same
    images and speaks the same words; CapstoneError otherwise."""
    def differ(what, mine, theirs):
        raise CapstoneError(f"{member.path}: cannot caption in an ensemble with {run.path}: its {what} is {theirs}, "
                            f"not {mine}; an ensemble's runs must be trained on the same embeddings and captions")
    if member.vocab != run.vocab:
        differ("vocabulary", f"{len(run.vocab)} words", f"a different one of {len(member.vocab)} words (vocab.json)")
    if member.model_config.decoder != run.model_config.decoder:
        differ("decoder", run.model_config.decoder, member.model_config.decoder)
    if (member.encoder, member.model_config.img_embed_size) != (run.encoder, run.model_config.img_embed_size):
        differ("image encoder", f"{run.encoder} ({run.model_config.img_embed_size}-d)",
               f"{member.encoder} ({member.model_config.img_embed_size}-d)")
