"""The graph of self-critical training: sampled and greedy captions, and the weighted loss.

One graph holds the run's training decoder (``FastDecoder`` or ``AttentionDecoder``, the very
variables cross-entropy training saved) and, on the same layers, two decoding loops of
``capstone.fast.decoding``: K captions sampled per image at temperature 1, and the greedy one.
The loss is the decoder's ``weighted_caption_loss``: the teacher-forced graph fed the sampled
captions instead of the ground truth, each caption's log-likelihood weighted by its reward minus
the greedy caption's (Rennie et al. 2017). Its Adam has slots of its own (scope
``self_critical_adam``), so the cross-entropy checkpoint it starts from lacks only those.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from capstone.attention import AttentionDecoder
from capstone.attention.layers import attention_step_for
from capstone.captions import END, PAD, START, UNK
from capstone.config import MAX_LEN
from capstone.fast import FastDecoder
from capstone.fast.decoding import greedy_decode, show_and_tell_step
from capstone.layers import LSTMState

v1 = tf.compat.v1


@dataclasses.dataclass
class SelfCriticalGraph:
    graph: tf.Graph
    decoder: object             # FastDecoder or AttentionDecoder: img_embeds, sentences, caption_weights
    samples: int                # K, captions sampled per image
    sample_seed: tf.Tensor      # [2] int64 placeholder: the draws are a function of it
    sampled: tuple              # (tokens [B*K, steps], lengths [B*K]): row b*K+k is image b's k-th sample
    greedy: tuple               # (tokens [B, steps], lengths [B])
    train_op: tf.Operation
    learning_rate: tf.Tensor    # Adam's step size, fed each epoch (self_critical_rate_for); default: the configured one
    epoch: tf.Variable
    next_epoch: tf.Tensor
    set_epoch: tf.Operation
    saver: v1.train.Saver       # everything, for self-critical checkpoints
    model_saver: v1.train.Saver  # what a cross-entropy checkpoint holds and self-critical training starts from
    init: tf.Operation


def build_self_critical_graph(vocab, model_config, training_config):
    """Inputs: the run's vocabulary and configs. Outputs: a SelfCriticalGraph (see its fields)."""
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(training_config.seed)
        decoder_class = AttentionDecoder if model_config.decoder == "attention" else FastDecoder
        decoder = decoder_class(len(vocab), vocab[PAD], model_config)
        global_step = v1.train.get_or_create_global_step()
        epoch = v1.get_variable("epoch", [], tf.int64, initializer=v1.zeros_initializer(), trainable=False)
        cross_entropy_variables = v1.global_variables()
        samples = training_config.self_critical_samples
        sample_seed = v1.placeholder(tf.int64, [2], name="sample_seed")
        sampled, greedy = build_decoding(decoder, vocab, samples, sample_seed)
        learning_rate = v1.placeholder_with_default(
            np.float32(training_config.self_critical_learning_rate), [], "self_critical_learning_rate")
        optimizer = v1.train.AdamOptimizer(learning_rate, name="self_critical_adam")
        with v1.variable_scope("self_critical"):
            train_op = optimizer.minimize(decoder.weighted_caption_loss, global_step=global_step)
        next_epoch = v1.placeholder(tf.int64, [], name="next_epoch")
        return SelfCriticalGraph(
            graph=graph, decoder=decoder, samples=samples, sample_seed=sample_seed, sampled=sampled, greedy=greedy,
            train_op=train_op, learning_rate=learning_rate, epoch=epoch, next_epoch=next_epoch,
            set_epoch=epoch.assign(next_epoch),
            saver=v1.train.Saver(max_to_keep=None), model_saver=v1.train.Saver(cross_entropy_variables),
            init=v1.global_variables_initializer())


def build_decoding(decoder, vocab, samples, sample_seed):
    """Inputs: decoder.img_embeds (B images) and its layers, sample_seed.
    Outputs: (sampled, greedy) token tensors (``greedy_decode``'s tokens and lengths), MAX_LEN words at most.
    """
    if isinstance(decoder, AttentionDecoder):
        step_for = attention_step_for(decoder.layers, decoder.features)
    else:
        step_for = show_and_tell_step(decoder.layers)
    start = LSTMState(c=decoder.c0, h=decoder.h0)
    banned = [vocab[token] for token in (PAD, UNK, START)]
    common = (len(vocab), vocab[START], vocab[END], banned, MAX_LEN)
    # K rows per image: step_for(K) reads each row's image from a copy tiled once.
    tiled = tf.nest.map_structure(lambda s: tf.repeat(s, samples, axis=0), start)
    sampled_tokens, sampled_lengths, _ = greedy_decode(lambda _, allowed: step_for(samples, allowed), tiled, *common, sample=True,
                                                       temperature=1.0, seed=sample_seed)
    greedy_tokens, greedy_lengths, _ = greedy_decode(step_for, start, *common)
    return (sampled_tokens, sampled_lengths), (greedy_tokens, greedy_lengths)


def captions_to_sentences(tokens, lengths, start_idx, pad_idx):
    """Decoded captions as the training graph's ``sentences``: START, the caption's tokens (its END
    included when it has one), PAD after. tokens [R, steps], lengths [R] -> [R, steps + 1] int32."""
    rows, steps = tokens.shape
    sentences = np.full((rows, steps + 1), pad_idx, dtype=np.int32)
    sentences[:, 0] = start_idx
    inside = np.arange(steps)[None, :] < lengths[:, None]
    sentences[:, 1:][inside] = tokens[inside]
    return sentences


def caption_words(tokens, lengths, inverse_vocab, end_idx):
    """Each decoded row as a list of words, END dropped (what CIDEr-D scores)."""
    return [[inverse_vocab[int(t)] for t in row[:n] if t != end_idx] for row, n in zip(tokens, lengths)]
