"""Label smoothing (Szegedy et al. 2016): learn from a softened target, not from the one-hot word.

The target distribution of each word becomes (1 - eps) * one_hot(y) + eps / vocab, so the decoder is
never pushed towards probability 1 for one word. Its cross-entropy, with logits z and z_bar their mean,
splits into the course's loss plus a term that is linear in the logits:

    -sum_v q_v log p_v = (logsumexp(z) - z_y) + eps * (z_y - z_bar) = cross-entropy + eps * penalty

so the penalty needs neither the softmax nor a second [N, vocab] pass: z_y is one column of the
kernel per target and z_bar one product with the kernel's mean column. The hand-written cross-entropy
(``capstone.fast.ops``) stays as it is, and so do ``loss`` and the validation loss: training minimises
``loss + eps * penalty``, validation still reports the plain cross-entropy, comparable across settings.
"""

import tensorflow as tf


def label_smoothing_penalty(decoder):
    """The mean over real (non-PAD) targets of z_y - z_bar: the label's logit above the average logit.

    Reads the decoder's logits input and targets: ``logits_bottleneck`` [N, LOGIT_BOTTLENECK] and
    ``targets`` [N] with ``layers.token_logits`` (``FastDecoder``, ``AttentionDecoder``), or the course
    ``Decoder``'s ``flat_token_logits`` [B*(T-1), vocab], ``flat_ground_truth`` and ``flat_loss_mask``.
    Returns a scalar; its gradient with respect to the logits is one_hot(y) - 1/vocab per target.
    """
    if hasattr(decoder, "targets"):
        inputs, targets = decoder.logits_bottleneck, tf.cast(decoder.targets, tf.int32)
        kernel = tf.convert_to_tensor(decoder.layers.token_logits.kernel)           # [K, vocab]
        bias = tf.convert_to_tensor(decoder.layers.token_logits.bias)               # [vocab]
        label_logits = (tf.reduce_sum(inputs * tf.transpose(tf.gather(kernel, targets, axis=1)), axis=1)
                        + tf.gather(bias, targets))                                  # [N]
        mean_logits = tf.linalg.matvec(inputs, tf.reduce_mean(kernel, axis=1)) + tf.reduce_mean(bias)
        return tf.reduce_sum(label_logits - mean_logits) / tf.maximum(tf.cast(tf.size(targets), tf.float32), 1.0)
    logits, mask = decoder.flat_token_logits, decoder.flat_loss_mask                 # [M, vocab], [M]
    label_logits = tf.gather(logits, decoder.flat_ground_truth, axis=1, batch_dims=1)
    per_word = label_logits - tf.reduce_mean(logits, axis=1)
    return tf.reduce_sum(per_word * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
