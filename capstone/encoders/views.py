"""Extra training views: embeddings of a mirrored and of a cropped copy of every photo.

    embed photos/ --augment flip,crop --out runs/f/all
    # + runs/f/all_img_views.npy          float32 [N, 2, D]      (pooled, beside the course's pickles)
    # + runs/f/all_img_view_features.npy  float16 [N, 2, G, G, D] (with --spatial)

Row i holds the views of the i-th file of PREFIX_img_fns.pickle, in the order PREFIX_img_meta.json
lists them. ``train`` shows the decoder, for each image of a batch, either the photo or one of its
views, so it sees more than one embedding per photo (a cheap stand-in for augmenting the pixels
while training, which frozen embeddings rule out). Validation and test use the photos only.

A mirrored photo swaps left and right, so training swaps those words in its captions (see
``capstone.training``): that keeps the ~0.4 % of Flickr8k captions naming a side true of the view.
"""

import cv2
import numpy as np

from capstone.errors import CapstoneError

CROP_SIDE = 0.8  # the crop view: the central 80 % of the side (64 % of the area), resized back up


def mirror(pixels):
    """[B, S, S, 3] -> the same photos flipped left to right."""
    return pixels[:, :, ::-1, :]


def central_crop(pixels):
    """[B, S, S, 3] -> the central CROP_SIDE square of each, resized (bilinear) back to S x S: a zoom."""
    size = pixels.shape[1]
    side = int(round(size * CROP_SIDE))
    start = (size - side) // 2
    crops = pixels[:, start:start + side, start:start + side]
    return np.stack([cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_LINEAR)
                     for crop in crops]).astype(pixels.dtype)


VIEWS = {"flip": mirror, "crop": central_crop}
MIRRORED_VIEWS = {"flip"}  # views in which left and right trade places


def parse_views(text, flag="--augment"):
    """"flip,crop" -> ("flip", "crop"); "" or None -> (); an unknown or repeated name is a CapstoneError."""
    names = tuple(name.strip() for name in (text or "").split(",") if name.strip())
    for name in names:
        if name not in VIEWS:
            raise CapstoneError(f"{flag}: unknown view {name!r}; expected names from {', '.join(VIEWS)}, "
                                f"separated by commas")
    if len(set(names)) != len(names):
        raise CapstoneError(f"{flag}: {text!r} names a view twice")
    return names


def with_views(pixels, names):
    """[B, S, S, 3] -> [(1 + V) * B, S, S, 3]: the photos, then each view of all of them."""
    return np.concatenate([pixels] + [VIEWS[name](pixels) for name in names]) if names else pixels


def split_views(outputs, batch):
    """Encoder outputs of ``with_views`` [(1 + V) * B, ...] -> (photos [B, ...], views [B, V, ...])."""
    views = outputs[batch:].reshape((-1, batch) + outputs.shape[1:])  # [V, B, ...]
    return outputs[:batch], np.swapaxes(views, 0, 1)


def views_path(prefix, spatial=False):
    """Where ``embed --augment`` writes the views: the pooled ones, or (spatial) the grids."""
    return f"{prefix}_img_view_features.npy" if spatial else f"{prefix}_img_views.npy"


def read_views(path, count, names, per_image_shape):
    """A views ``.npy`` as a read-only memory map [N, V, ...], checked against the photos it belongs to.

    count: the number of photos (N); names: the views the meta file lists (V); per_image_shape:
    the shape of one photo's embedding ([D] or [G, G, D]), which each view must have too.
    """
    try:
        views = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise CapstoneError(f"{path}: missing, but the meta file beside it lists views {list(names)}; "
                            f"run 'embed --augment {','.join(names)}' again") from None
    except ValueError as error:
        raise CapstoneError(f"{path}: not a .npy array ({error})") from None
    expected = (count, len(names)) + tuple(per_image_shape)
    if views.shape != expected:
        raise CapstoneError(f"{path}: views of shape {views.shape}, expected {expected} "
                            f"({count} photos x views {list(names)} x {tuple(per_image_shape)})")
    return views


def mirror_token_map(vocab):
    """Token ids -> the ids a mirrored photo's caption has: "left" and "right" swapped, the rest kept.

    vocab: {word: id}. Returns int array [len(vocab)], applied as ``token_map[sentences]``.
    """
    token_map = np.arange(len(vocab))
    if "left" in vocab and "right" in vocab:
        token_map[vocab["left"]], token_map[vocab["right"]] = vocab["right"], vocab["left"]
    return token_map


class TrainingViews:
    """What a training batch shows of each image: the photo itself or one of its views, drawn uniformly.

    arrays: [N, V, ...] (``read_views``), row i the views of training image i; names: the V view names;
    vocab: {word: id}, to swap left and right in the captions of mirrored views.
    """

    def __init__(self, arrays, names, vocab):
        self.arrays, self.names = arrays, tuple(names)
        self.token_maps = [mirror_token_map(vocab) if name in MIRRORED_VIEWS else None for name in names]

    def show(self, image_ix, embeds, sentences, rng):
        """Replace, per row, the photo's embedding (and its caption's sides) by a random view's.

        image_ix [B], embeds [B, ...] (the photos' rows, a copy), sentences [B, T] token ids.
        Returns (embeds, sentences); draws one integer per row from ``rng`` (0: the photo itself).
        """
        choice = rng.integers(0, 1 + len(self.names), len(image_ix))  # [B]
        for view, token_map in enumerate(self.token_maps):
            rows = np.flatnonzero(choice == view + 1)
            if len(rows):
                embeds[rows] = self.arrays[image_ix[rows], view]
                if token_map is not None:
                    sentences[rows] = token_map[sentences[rows]]
        return embeds, sentences
