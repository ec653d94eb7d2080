"""The engine: the same maths as the course's graphs, with less work.

    trainer.py   ``FastDecoder``: the training graph ``train`` uses (same variables as ``Decoder``)
    ops.py       its custom-gradient ops: packed LSTM, dense embedding gradient, fused cross-entropy
    label_smoothing.py  the penalty that turns the cross-entropy into label smoothing's, for any decoder
    decoding.py  greedy, sampled and beam-search captions inside the graph, one Session.run a batch

May import the course's ``layers``, ``decoder`` and ``config``; never ``training``/``final_model``
(they import this), nor anything above them.
"""

from capstone.fast.trainer import FastDecoder

__all__ = ["FastDecoder"]
