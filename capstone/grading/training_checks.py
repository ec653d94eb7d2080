"""Checks of training: the learner's generate_batch, and the trained decoder's validation loss.

The validation loss is computed here, from the learner's decoder and session, on a fixed seeded
set of (image, caption) pairs: a number typed into the notebook cannot pass, nor a broken loss
tensor (the cross-entropy is taken in numpy from the decoder's flat_token_logits).
"""

import copy
import math

import numpy as np

from capstone import captions as reference
from capstone.captions import PAD
from capstone.grading.common import Mismatch, call_learner, guarded
from capstone.grading.decoder_checks import masked_mean_xent

# Validation loss (mean cross-entropy per token) a trained decoder should get below, by data.
VALIDATION_LOSS_THRESHOLDS = {
    # shapes dataset + EfficientNet-Lite0: the notebook's quick run (course decoder, 240 batches) reaches
    # ~1.0, the package's demo ~0.80; a decoder fed all-zero embeddings stays at ~1.26.
    "shapes": 1.2,
    # Flickr8k-dev + EfficientNet-Lite0 (vocabulary 825 at min_count 3): the README recipe's best is 3.01
    # (seed 42); after 4 of its epochs it is 3.39.
    "flickr8k": 3.3,
    # the course's COCO sample + InceptionV3 embeddings (ln of its 8769 words is 9.08). Not measured
    # here (no COCO data offline): a first guess, to check against a real run.
    "coco": 3.0,
}
DEFAULT_VALIDATION_LOSS_THRESHOLD = VALIDATION_LOSS_THRESHOLDS["shapes"]
VALIDATION_SEED = 20240601      # the fixed validation pairs
VALIDATION_PAIRS = 3200         # at most this many (image, caption) pairs: 50 batches of 64
VALIDATION_BATCH, VALIDATION_MAX_LEN = 64, 20
SHAPES_MAX_VOCAB = 200          # the shapes captions use ~60 words; real photos need hundreds
COCO_MIN_VOCAB = 5000           # the course's COCO vocabulary has 8769 tokens


def infer_data(vocab_size=None, encoder=None, data=None):
    """'shapes', 'flickr8k' or 'coco': the recorded data name if any, else guessed from the sizes."""
    if data:
        name = str(data).lower()
        for known in VALIDATION_LOSS_THRESHOLDS:
            if known in name:
                return known
    if vocab_size is not None and vocab_size <= SHAPES_MAX_VOCAB:
        return "shapes"
    if encoder == "inception_v3" or (vocab_size is not None and vocab_size >= COCO_MIN_VOCAB):
        return "coco"
    return "flickr8k"


def run_data(run_dir):
    """The data a run directory was trained on: config.json's optional 'data', else inferred."""
    from capstone.support import run_dir as runs

    run = runs.load_run(run_dir)
    recorded = None
    if run.data:  # {"source": "shapes" or "captions", "captions": [files], "images": N} (capstone.support.run_dir)
        recorded = run.data.get("source") if run.data.get("source") == runs.SHAPES else \
            " ".join(str(path) for path in run.data.get("captions", []))  # e.g. .../flickr8k/captions.csv
    return infer_data(len(run.vocab), run.encoder, recorded)


# ---------------------------------------------------------------------------------------------
# generate_batch


class _Key:
    """A stand-in for decoder.img_embeds / decoder.sentences: generate_batch uses them as dict keys."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"decoder.{self.name}"


class BatchDecoder:
    """What generate_batch reads from a decoder: its two placeholders and pad_idx."""

    def __init__(self, pad_idx):
        self.img_embeds, self.sentences, self.pad_idx = _Key("img_embeds"), _Key("sentences"), pad_idx


def batch_problem(n_images=12, embed_size=6, pad_idx=1, seed=0):
    """(embeddings [N, D], indexed captions): distinct rows, 3-5 distinct captions of 3..25 tokens each."""
    rng = np.random.default_rng(seed)
    embeds = (np.arange(n_images)[:, None] + rng.random((n_images, embed_size))).astype(np.float32)
    tokens = [t for t in range(2, 40) if t != pad_idx]
    # START-like 0, then the caption's number (so an image's captions all differ), random words, END-like 40
    captions = [[[0, 50 + j] + [int(t) for t in rng.choice(tokens, rng.integers(1, 24))] + [40]
                 for j in range(rng.integers(3, 6))] for _ in range(n_images)]
    return embeds, captions


def _row_caption(row, image_captions, pad_idx, columns, max_len):
    """Index of the caption whose padded/cut form is ``row``, or None."""
    for index, caption in enumerate(image_captions):
        want = reference.batch_captions_to_matrix([caption], pad_idx, max_len)[0][:columns].tolist()
        want += [pad_idx] * (columns - len(want))
        if list(row) == want:
            return index
    return None


def _check_one_batch(feed, decoder, embeds, captions, batch_size, max_len, call):
    expected = f"{{decoder.img_embeds: [{batch_size}, {embeds.shape[1]}], decoder.sentences: [{batch_size}, <= {max_len}]}}"
    if not isinstance(feed, dict) or set(feed) != {decoder.img_embeds, decoder.sentences}:
        keys = sorted(map(repr, feed)) if isinstance(feed, dict) else type(feed).__name__
        raise Mismatch(expected, keys, f"{call} must return a feed dict with exactly the keys decoder.img_embeds and "
                                       f"decoder.sentences, received {keys}")
    images, sentences = np.asarray(feed[decoder.img_embeds]), np.asarray(feed[decoder.sentences])
    if images.shape != (batch_size, embeds.shape[1]):
        raise Mismatch(expected, images.shape, f"{call}: decoder.img_embeds has shape {images.shape}, expected "
                                               f"{(batch_size, embeds.shape[1])}: one image embedding per caption")
    if sentences.ndim != 2 or len(sentences) != batch_size or not np.issubdtype(sentences.dtype, np.integer):
        raise Mismatch(expected, f"{sentences.shape} {sentences.dtype}", f"{call}: decoder.sentences must be an "
                                                                         f"integer matrix with {batch_size} rows "
                                                                         f"(batch_captions_to_matrix)")
    picked = []
    for row, (image, sentence) in enumerate(zip(images, sentences)):
        found = np.flatnonzero(np.all(embeds == image, axis=1))
        if len(found) != 1:
            raise Mismatch(expected, "unknown rows", f"{call}: row {row} of decoder.img_embeds is not one of "
                                                     f"images_embeddings: take whole rows, images_embeddings[indices]")
        caption = _row_caption(sentence, captions[found[0]], decoder.pad_idx, sentences.shape[1], max_len)
        if caption is None:
            raise Mismatch(expected, sentence.tolist(), f"{call}: row {row} {sentence.tolist()} is not a caption of "
                                                        f"image {found[0]} padded with pad_idx={decoder.pad_idx} and "
                                                        f"cut at max_len={max_len}: take the captions of the same "
                                                        f"images you took the embeddings of")
        picked.append((int(found[0]), caption))
    longest = max(len(captions[i][c]) for i, c in picked)
    columns = longest if max_len is None else min(longest, max_len)
    if sentences.shape[1] != columns:
        raise Mismatch(expected, sentences.shape, f"{call}: decoder.sentences has {sentences.shape[1]} columns, "
                                                  f"expected {columns} (the longest caption of the batch, at most "
                                                  f"max_len): use batch_captions_to_matrix(captions, pad_idx, max_len)")
    return picked


def check_generate_batch(generate_batch_fn, n_calls=40, batch_size=8):
    decoder = BatchDecoder(pad_idx=1)
    embeds, captions = batch_problem(pad_idx=decoder.pad_idx)
    originals = copy.deepcopy((embeds, captions))
    expected = f"{batch_size} random images, one random caption of each"
    state = np.random.get_state()
    np.random.seed(0)  # learner code that uses np.random instead of rng is fine, and repeatable
    try:
        picked = []
        for call_index in range(n_calls):
            max_len = (None, 10, 20)[call_index % 3]
            call = f"generate_batch(decoder, images_embeddings, indexed_captions, {batch_size}, max_len={max_len}, rng=...)"
            feed = call_learner(expected, call, generate_batch_fn, decoder, embeds, captions, batch_size,
                                max_len=max_len, rng=np.random.default_rng(call_index))
            picked += _check_one_batch(feed, decoder, embeds, captions, batch_size, max_len, call)
        generate_batch_fn(decoder, embeds, captions, batch_size, max_len=10, rng=np.random.default_rng(0))
    finally:
        np.random.set_state(state)
    if not (np.array_equal(embeds, originals[0]) and captions == originals[1]):
        raise Mismatch(expected, "changed its input", "generate_batch changed images_embeddings or indexed_captions: "
                                                      "build new arrays (batch_captions_to_matrix copies)")
    images = {image for image, _ in picked}
    if len(images) < len(embeds):
        raise Mismatch(expected, f"{len(images)} of {len(embeds)} images", f"in {n_calls} batches only images "
                                                                           f"{sorted(images)} of 0..{len(embeds) - 1} "
                                                                           f"appeared: draw random image indices, "
                                                                           f"rng.integers(0, len(images_embeddings), "
                                                                           f"batch_size)")
    fixed = [i for i in images if len({c for image, c in picked if image == i}) == 1]
    if len(fixed) > len(images) // 2:
        raise Mismatch(expected, "always the same caption", f"images {sorted(fixed)[:5]} always came with the same "
                                                            f"caption: pick a random one of each image's captions")
    return expected, f"{len(picked)} rows checked", (f"{n_calls} batches: every row is an image with one of its own "
                                                      f"captions, padded and cut as batch_captions_to_matrix; all "
                                                      f"{len(images)} images and their captions are drawn")


# ---------------------------------------------------------------------------------------------
# validation loss of the learner's trained decoder


def validation_feeds(decoder, val_embeds, val_captions, vocab, seed=VALIDATION_SEED):
    """Fixed batches of (image, caption) pairs, every caption indexed and padded by the reference."""
    indexed = reference.caption_tokens_to_indices(val_captions, vocab)
    pairs = [(i, j) for i, image_captions in enumerate(indexed) for j in range(len(image_captions))]
    rng = np.random.default_rng(seed)
    if len(pairs) > VALIDATION_PAIRS:
        pairs = [pairs[k] for k in sorted(rng.choice(len(pairs), VALIDATION_PAIRS, replace=False))]
    embeds = np.asarray(val_embeds, np.float32)
    for start in range(0, len(pairs), VALIDATION_BATCH):
        chunk = pairs[start:start + VALIDATION_BATCH]
        sentences = reference.batch_captions_to_matrix([indexed[i][j] for i, j in chunk], vocab[PAD],
                                                       VALIDATION_MAX_LEN)
        yield {decoder.img_embeds: embeds[[i for i, _ in chunk]], decoder.sentences: sentences}, sentences


def validation_loss(decoder, session, val_embeds, val_captions, vocab):
    """Mean cross-entropy per real token, from the decoder's flat_token_logits, over the fixed pairs."""
    total, tokens = 0.0, 0.0
    for feed, sentences in validation_feeds(decoder, val_embeds, val_captions, vocab):
        logits = session.run(decoder.flat_token_logits, feed)
        targets = sentences[:, 1:].reshape(-1)
        mask = (targets != vocab[PAD]).astype(np.float64)
        loss, _ = masked_mean_xent(logits, targets, mask)
        total, tokens = total + loss * mask.sum(), tokens + mask.sum()
    return total / max(tokens, 1.0)


def check_validation_loss(decoder, session, val_embeds, val_captions, vocab, threshold, data):
    data = data or infer_data(len(vocab))
    threshold = VALIDATION_LOSS_THRESHOLDS[data] if threshold is None else threshold
    expected = f"< {threshold} ({data})"
    value = guarded(expected, "the decoder's flat_token_logits on the validation pairs", validation_loss, decoder,
                    session, val_embeds, val_captions, vocab)
    return check_loss_value(value, threshold, data, "computed by the grader on the fixed validation pairs")


def check_loss_value(value, threshold, data, source):
    expected = f"< {threshold} ({data})"
    try:
        received = float(value)
    except (TypeError, ValueError):
        raise Mismatch(expected, repr(value), "the validation loss must be a number") from None
    if not (math.isfinite(received) and 0.0 < received < threshold):  # NaN, -inf and 0 fail too
        hint = ("a cross-entropy is positive and finite: check the loss" if not (math.isfinite(received)
                and received > 0) else "train longer, or check the decoder")
        raise Mismatch(expected, round(received, 4), f"validation loss {received:.3f} ({source}) is not in "
                                                     f"(0, {threshold}): {hint}")
    return expected, round(received, 4), f"validation loss {received:.3f} ({source}) is below {threshold}"
