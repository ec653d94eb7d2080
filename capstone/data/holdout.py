"""A validation set carved from the training images, for ``train`` runs given none.

Without validation data nothing tells training when to stop (or when to lower its learning rate), and
on real photos the decoder then overfits. So ``train`` holds out a seeded share of its training images
instead — whole images, all their captions, so no caption of a
held-out photo is ever trained on — and says that it did.
"""

import numpy as np

HOLDOUT_SHARE = 0.05     # share of the training images held out when no validation data is given
HOLDOUT_MAX = 500        # at most this many: 500 photos score a validation loss to ~0.01 nats
HOLDOUT_MIN_IMAGES = 100  # with fewer training images nothing is held out (too few to spare)


class Rows:
    """Some rows of an array, read only when indexed: a memory-mapped grid file stays on disk."""

    def __init__(self, array, rows):
        self.array, self.rows = array, np.asarray(rows)
        self.shape = (len(self.rows),) + tuple(array.shape[1:])
        self.ndim, self.dtype = array.ndim, array.dtype

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.array[self.rows[index]]


def holdout_size(n_images, share=HOLDOUT_SHARE):
    """How many of ``n_images`` training images become validation images (0: too few to spare)."""
    if n_images < HOLDOUT_MIN_IMAGES or share <= 0:
        return 0
    return int(min(HOLDOUT_MAX, max(1, round(share * n_images))))


def holdout_rows(n_images, n_held_out, seed):
    """(validation rows, training rows), each sorted: which images ``hold_out`` moves, by ``seed``."""
    order = np.random.default_rng([seed, 4242]).permutation(n_images)
    return np.sort(order[:n_held_out]), np.sort(order[n_held_out:])


def hold_out(embeds, captions, n_held_out, seed):
    """(train embeds, train captions, val embeds, val captions): ``n_held_out`` images chosen by ``seed``.

    embeds: [images, ...] (an array or a memory map); captions: per image, its list of captions.
    Pooled embeddings are copied; spatial features stay where they are and are read per batch.
    """
    val_rows, train_rows = holdout_rows(len(embeds), n_held_out, seed)
    if isinstance(embeds, np.memmap) or isinstance(embeds, Rows):
        train_embeds, val_embeds = Rows(embeds, train_rows), Rows(embeds, val_rows)
    else:
        embeds = np.asarray(embeds)
        train_embeds, val_embeds = embeds[train_rows], embeds[val_rows]
    return (train_embeds, [captions[i] for i in train_rows], val_embeds, [captions[i] for i in val_rows])
