"""Show, Attend and Tell: a soft-attention decoder over the grid of CNN features (beyond the course).

    layers.py   its layers, the attention and the one step every attention graph runs
    decoder.py  ``AttentionDecoder``: the training graph (same placeholders and loss as ``Decoder``)

Decoding (greedy, sampled, beam, with the attention weights of every word) is
``capstone.fast.decoding`` driven by ``layers.attention_step_for``. May import the course's
``layers``, ``decoder``, ``config`` and ``capstone.fast``.
"""

from capstone.attention.decoder import AttentionDecoder

__all__ = ["AttentionDecoder"]
