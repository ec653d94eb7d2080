"""The engine: the same maths as the course's graphs, with less work.

    trainer.py   ``FastDecoder``: the training graph ``train`` uses (same variables as ``Decoder``)
    ops.py       its custom-gradient ops: packed LSTM, dense embedding gradient, fused cross-entropy
    label_smoothing.py  the penalty that turns the cross-entropy into label smoothing's, for any decoder
    decoding.py  greedy, sampled and beam-search captions inside the graph, one Session.run a batch
    repeat_blocking.py  the words that would repeat an n-gram, banned while decoding (--no-repeat-ngram)
    ensemble.py  several decoders as one step: each word from their mean log probabilities (--ensemble)

May import the course's ``layers``, ``decoder`` and ``config``; never ``training``/``final_model``
(they import this), nor anything above them.
"""

from capstone.fast.trainer import FastDecoder

__all__ = ["FastDecoder"]
