"""``python -m capstone embed``: images (zip or folder) -> the course's embedding pickles."""

import os
import sys

from capstone.errors import CapstoneError
from capstone.support import precision


def add_arguments(p):
    p.add_argument("source", help="zip file or folder of images")
    p.add_argument("--encoder", default="efficientnet_lite0", help="inception_v3 (course) or efficientnet_lite0 (offline)")
    p.add_argument("--weights", default="imagenet", help="imagenet, a weights file, or an http(s) URL (inception_v3)")
    p.add_argument("--out", required=True, help="PREFIX: writes PREFIX_img_embeds.pickle and PREFIX_img_fns.pickle")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--spatial", action="store_true",
                   help="also write PREFIX_img_features.npy: the CNN's feature grid per image (float16, memory-mapped), "
                        "what 'train --decoder attention' reads")
    precision.add_precision_argument(p)  # recorded in PREFIX_embed.json


def run(args):
    from capstone.encoders.embed import IMAGE_EXTENSIONS, embed_images, save_embedding_record, save_embeddings
    from capstone.encoders import encoder_spec
    from utils.image_files import ImageFiles

    encoder_spec(args.encoder)  # an unknown name fails before any work
    chosen = precision.resolve(args.precision)
    if not os.path.exists(args.source):
        raise CapstoneError(f"{args.source}: no such zip file or folder")
    if args.spatial:
        from capstone.encoders.spatial import embed_spatial, features_path

        embeds, fns = embed_spatial(args.source, args.encoder, args.out, weights=args.weights,
                                    batch_size=args.batch_size, precision=chosen)
        print(features_path(args.out))
    else:
        embeds, fns = embed_images(args.source, args.encoder, weights=args.weights, batch_size=args.batch_size,
                                   precision=chosen)
    for path in save_embeddings(args.out, embeds, fns):
        print(path)
    print(save_embedding_record(args.out, args.encoder, args.weights, chosen, len(fns)))
    skipped = len(ImageFiles(args.source, IMAGE_EXTENSIONS).files) - len(fns)
    print(f"{len(fns)} images, {embeds.shape[1]}-d embeddings ({args.encoder})"
          + (f"; {skipped} files skipped (named above)" if skipped else ""), file=sys.stderr)
