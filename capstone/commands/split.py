"""``python -m capstone split``: a seeded train/val/test split of embedding pickles."""

from capstone.encoders.embed import read_embeddings
from capstone.errors import CapstoneError


def add_arguments(p):
    p.add_argument("prefix", help="PREFIX of PREFIX_img_embeds.pickle / PREFIX_img_fns.pickle")
    p.add_argument("--val", type=float, default=0.15, help="fraction (or count, if >= 1) for validation")
    p.add_argument("--test", type=float, default=0.15, help="fraction (or count, if >= 1) for test")
    p.add_argument("--seed", type=int, default=0)


def run(args):
    """PREFIX -> PREFIX_train, PREFIX_val, PREFIX_test pickles (and spatial features, if any), split by image."""
    import os

    import numpy as np

    from capstone.encoders.embed import embeddings_paths, save_embeddings
    from capstone.encoders.spatial import features_path, read_features, write_rows

    embeds, fns = read_embeddings(*embeddings_paths(args.prefix))
    n = len(fns)
    sizes = [int(x) if x >= 1 else int(round(x * n)) for x in (args.val, args.test)]
    if min(sizes) < 1 or sum(sizes) >= n:
        raise CapstoneError(f"{args.prefix}: cannot take {sizes[0]} val + {sizes[1]} test images out of {n}")
    order = np.random.default_rng(args.seed).permutation(n)
    parts = {"val": order[:sizes[0]], "test": order[sizes[0]:sum(sizes)], "train": order[sum(sizes):]}
    features = read_features(features_path(args.prefix), n) if os.path.exists(features_path(args.prefix)) else None
    for name, rows in parts.items():
        rows = np.sort(rows)
        save_embeddings(f"{args.prefix}_{name}", embeds[rows], [fns[i] for i in rows])
        if features is not None:
            write_rows(features_path(f"{args.prefix}_{name}"), features, rows)
        print(f"{args.prefix}_{name}: {len(rows)} images")
