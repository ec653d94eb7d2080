"""Hyper-parameters: one commented line each, no magic numbers in the model code.

Defaults are the course's sizes; dropout, early stopping and the learning-rate schedule were chosen on
Flickr8k validation photos (bench/QUALITY.md), the course's values are noted beside them. Both objects are saved as ``config.json`` in a run directory so a
trained model can be rebuilt exactly; unknown keys in that file are an error, not a surprise.
"""

import dataclasses
import numbers
import os

from capstone.errors import CapstoneError

# Defaults shared by training and captioning.
MAX_LEN = 20          # MAX_LEN: captions are cut to this many tokens in training; the most words a caption gets
BEAM_SIZE = 3         # captions kept at each step of beam search
LENGTH_ALPHA = 1.0    # beam score = sum(log p) / length ** alpha: 1 = mean log probability per token
NO_REPEAT_NGRAM = 0   # no n-gram of this many words twice in a caption (0: no such rule; capstone.fast.repeat_blocking)


@dataclasses.dataclass
class ModelConfig:
    img_embed_size: int = 2048        # CNN embedding size: 2048 for InceptionV3, 1280 for EfficientNet-Lite0
    img_embed_bottleneck: int = 120   # IMG_EMBED_BOTTLENECK: image embedding squeezed before the LSTM
    word_embed_size: int = 100        # WORD_EMBED_SIZE: size of a word vector
    lstm_units: int = 300             # LSTM_UNITS: size of the LSTM's h and c
    logit_bottleneck: int = 120       # LOGIT_BOTTLENECK: hidden state squeezed before the vocabulary logits
    dropout: float = 0.5              # training dropout on image embeddings, word vectors, hidden states (course: 0)
    decoder: str = "show_and_tell"    # "show_and_tell" (the course: one pooled vector) or "attention" (Show, Attend and Tell)
    attention_units: int = 256        # attention: size of the space where image locations and the LSTM state meet
    attention_lambda: float = 1.0     # attention: weight of the doubly stochastic term (every location attended ~once)

    def __post_init__(self):
        check_share("dropout", self.dropout)


@dataclasses.dataclass
class TrainingConfig:
    batch_size: int = 64              # images per batch, one random caption each
    n_epochs: int = 12                # epochs to train in total (a resumed run continues up to this)
    n_batches_per_epoch: int = 1000   # batches per epoch (the course's 1000)
    n_validation_batches: int = 100   # fixed validation batches evaluated after each epoch
    max_len: int = MAX_LEN            # MAX_LEN: captions are cut to this many tokens (START/END included)
    learning_rate: float = 0.001      # Adam step size (the course's default)
    min_count: int = 5                # a word enters the vocabulary after this many occurrences
    patience: int = 3                 # stop after this many epochs without a better val loss (0 = never)
    lr_decay: float = 0.5             # the learning rate is multiplied by this after each epoch without a better val loss
    label_smoothing: float = 0.0      # eps: each word's target is (1 - eps) one-hot + eps / vocab (0: the course's cross-entropy)
    seed: int = 42                    # one seed for weights, batches and validation batches
    precision: str = "float32"        # matmuls in "float32" or "bfloat16" (float32 accumulation, variables and loss)
    self_critical_epochs: int = 0     # after cross-entropy: at most this many epochs of self-critical training on CIDEr-D (0 = none; patience applies)
    self_critical_learning_rate: float = 5e-5  # Adam step size of self-critical training
    self_critical_samples: int = 5    # captions sampled per image in self-critical training
    self_critical_baseline: str = "mean"  # a sample's reward is compared with the "mean" of its image's other samples, or the "greedy" caption's (Rennie et al.)

    def __post_init__(self):
        check_share("label_smoothing", self.label_smoothing)


DECODERS = ("show_and_tell", "attention")
PRECISIONS = ("float32", "bfloat16")  # what a graph computes its matmuls in (capstone.support.precision)

# What a run trained before a field existed did without it. A key missing from an old config.json takes
# this value, not today's default (defaults changed with issue #15), so an old run resumes as it was trained.
BEFORE_FIELD_EXISTED = {"dropout": 0.0, "patience": 0, "lr_decay": 1.0, "self_critical_baseline": "greedy"}


def config_from_dict(cls, values, where):
    """Build a config from a dict, naming unknown keys instead of ignoring them.

    Keys added later take the value that reproduces the old behaviour (``BEFORE_FIELD_EXISTED``; others,
    such as ``decoder``, their defaults; an old run trained in float32), so old run directories still load
    and resume as they were.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise CapstoneError(f"{where}: unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
    missing = {name: value for name, value in BEFORE_FIELD_EXISTED.items() if name in known and name not in values}
    config = cls(**missing, **values)
    if getattr(config, "decoder", DECODERS[0]) not in DECODERS:
        raise CapstoneError(f"{where}: unknown decoder {config.decoder!r}; known: {', '.join(DECODERS)}")
    if getattr(config, "precision", PRECISIONS[0]) not in PRECISIONS:
        raise CapstoneError(f"{where}: unknown precision {config.precision!r}; known: {', '.join(PRECISIONS)}")
    return config


def check_share(name, value):
    """A rate such as dropout or label smoothing: a number in [0, 1), checked when a config is made (from
    flags or from config.json), so a bad value is one line naming it, not an error from inside TensorFlow."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise CapstoneError(f"{name} must be a number >= 0 and < 1, got {value!r}")


def check_beam_size(beam_size):
    """A beam size is a positive whole number (not True, not 2.0): the one check, used everywhere."""
    if not isinstance(beam_size, numbers.Integral) or isinstance(beam_size, bool) or beam_size <= 0:
        raise CapstoneError(f"beam size must be a positive integer, got {beam_size!r}")
    return int(beam_size)


def check_max_len(max_len):
    """The most words of a caption: a whole number >= 0."""
    if not isinstance(max_len, numbers.Integral) or isinstance(max_len, bool) or max_len < 0:
        raise CapstoneError(f"max_len must be a non-negative integer, got {max_len!r}")
    return int(max_len)


def check_length_alpha(length_alpha):
    """Beam search's length penalty: score = sum log p / length ** alpha, alpha a number >= 0
    (0: the total log probability, which favours short captions; 1: the mean per word)."""
    if (isinstance(length_alpha, bool) or not isinstance(length_alpha, numbers.Real)
            or not 0 <= length_alpha < float("inf")):
        raise CapstoneError(f"length penalty alpha must be a number >= 0, got {length_alpha!r}")
    return float(length_alpha)


def check_no_repeat_ngram(n):
    """No n-gram of n words twice in a caption: n a whole number >= 0 (0: repeat freely)."""
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 0:
        raise CapstoneError(f"no-repeat n-gram size must be a whole number >= 0 (0: off), got {n!r}")
    return int(n)


def add_length_alpha_argument(p, more_help=""):
    """--length-alpha A, the flag of caption and evaluate."""
    p.add_argument("--length-alpha", type=float, default=None, metavar="ALPHA",
                   help=f"beam search: score = sum log p / length ** ALPHA (default {LENGTH_ALPHA}; 0 favours short "
                        f"captions){more_help}")


def length_alpha_from(args):
    """--length-alpha: a number >= 0, and only with --beam (greedy decoding has no length penalty).
    Returns the alpha to use."""
    if args.length_alpha is None:
        return LENGTH_ALPHA
    if not args.beam:
        raise CapstoneError("--length-alpha is beam search's length penalty: give --beam K as well")
    try:
        return check_length_alpha(args.length_alpha)
    except CapstoneError as error:
        raise CapstoneError(f"--length-alpha: {error}") from None


def add_no_repeat_ngram_argument(p, more_help=""):
    """--no-repeat-ngram N, the flag of caption, evaluate and serve (capstone.fast.repeat_blocking)."""
    p.add_argument("--no-repeat-ngram", type=int, default=NO_REPEAT_NGRAM, metavar="N",
                   help=f"no N words in a row twice in a caption, greedy or beam (default {NO_REPEAT_NGRAM}; "
                        f"0: no such rule){more_help}")


def add_ensemble_argument(p, more_help=""):
    """--ensemble RUN_DIR ..., the flag of caption, evaluate and serve (capstone.fast.ensemble)."""
    p.add_argument("--ensemble", nargs="+", metavar="RUN_DIR", default=[],
                   help="more run directories (trained on the same captions and embeddings) whose decoders vote "
                        f"with RUN_DIR's: each word from the geometric mean of their probabilities{more_help}")


def ensemble_from(args):
    """--ensemble: run directories. A file there is most likely an image the list swallowed."""
    for path in args.ensemble:
        if os.path.isfile(path):
            raise CapstoneError(f"--ensemble: {path} is a file, not a run directory; --ensemble takes every name after "
                                f"it, so put image files before it (or another option after its run directories)")
    return args.ensemble


def no_repeat_ngram_from(args):
    """--no-repeat-ngram: a whole number >= 0."""
    try:
        return check_no_repeat_ngram(args.no_repeat_ngram)
    except CapstoneError as error:
        raise CapstoneError(f"--no-repeat-ngram: {error}") from None


def check_temperature(temperature):
    """Sampling temperature: a number > 0 (1 = the model's own probabilities)."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature > 0:
        raise CapstoneError(f"temperature must be > 0, got {temperature!r}")
    return float(temperature)
