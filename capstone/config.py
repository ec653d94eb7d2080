"""Hyper-parameters: one commented line each, no magic numbers in the model code.

Defaults are the course's. Both objects are saved as ``config.json`` in a run directory so a
trained model can be rebuilt exactly; unknown keys in that file are an error, not a surprise.
"""

import dataclasses

from capstone.errors import CapstoneError


@dataclasses.dataclass
class ModelConfig:
    img_embed_size: int = 2048        # CNN embedding size: 2048 for InceptionV3, 1280 for EfficientNet-Lite0
    img_embed_bottleneck: int = 120   # IMG_EMBED_BOTTLENECK: image embedding squeezed before the LSTM
    word_embed_size: int = 100        # WORD_EMBED_SIZE: size of a word vector
    lstm_units: int = 300             # LSTM_UNITS: size of the LSTM's h and c
    logit_bottleneck: int = 120       # LOGIT_BOTTLENECK: hidden state squeezed before the vocabulary logits
    dropout: float = 0.0              # training dropout on image embeddings, word vectors, hidden states (0 = course)


@dataclasses.dataclass
class TrainingConfig:
    batch_size: int = 64              # images per batch, one random caption each
    n_epochs: int = 12                # epochs to train in total (a resumed run continues up to this)
    n_batches_per_epoch: int = 1000   # batches per epoch (the course's 1000)
    n_validation_batches: int = 100   # fixed validation batches evaluated after each epoch
    max_len: int = 20                 # MAX_LEN: captions are cut to this many tokens (START/END included)
    learning_rate: float = 0.001      # Adam step size (the course's default)
    min_count: int = 5                # a word enters the vocabulary after this many occurrences
    patience: int = 0                 # stop after this many epochs without a better val loss (0 = never)
    seed: int = 42                    # one seed for weights, batches and validation batches


def config_from_dict(cls, values, where):
    """Build a config from a dict, naming unknown keys instead of ignoring them."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CapstoneError(f"{where}: unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
    return cls(**values)
