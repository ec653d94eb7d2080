"""How good is a trained model? Caption a split, score it, compare with the nearest-neighbour baseline.

    report = evaluate_model(model, test_embeds, test_fns, fn_to_captions, beam=3)
    report["scores"]    # {"Bleu_1": ..., "Bleu_4": ..., "METEOR": ..., "ROUGE_L": ..., "CIDEr": ...}
    report["fully_true"]  # with scenes= (shapes data): {"1": 0.9, "2": 0.7, "3": 0.4}, see shapes_facts
"""

import io
import os
import zipfile

import numpy as np

from capstone.evaluation.baseline import nearest_neighbour_captions
from capstone.data.caption_files import captions_for_fns
from capstone.data.shapes_facts import fully_true_rates
from capstone.config import LENGTH_ALPHA, MAX_LEN, NO_REPEAT_NGRAM
from capstone.errors import CapstoneError
from capstone.evaluation.metrics import score_captions
from utils import decode_image_from_buf


def caption_embeddings(model, embeds, beam=0, max_len=MAX_LEN, batch_size=64, length_alpha=LENGTH_ALPHA,
                       no_repeat_ngram=NO_REPEAT_NGRAM):
    """Greedy (beam=0) or beam-search captions (length penalty ``length_alpha``) for every row of ``embeds``,
    no n-gram of ``no_repeat_ngram`` words twice in one (0: no such rule)."""
    if beam < 0 or int(beam) != beam:
        raise CapstoneError(f"beam size must be a positive integer (or 0 for greedy), got {beam}")
    captions = []
    for start in range(0, len(embeds), batch_size):
        batch = embeds[start:start + batch_size]
        if beam:
            captions += [found[0][0] for found in model.beam_captions(embeddings=batch, beam_size=beam, max_len=max_len,
                                                                      length_alpha=length_alpha,
                                                                      no_repeat_ngram=no_repeat_ngram)]
        else:
            captions += model.captions(embeddings=batch, max_len=max_len, no_repeat_ngram=no_repeat_ngram)
    return captions


def score_split(fns, references, candidates, use_java=None):
    """pycocoevalcap scores of candidates (one string per fn) against references (lists per fn)."""
    return score_captions(dict(zip(fns, references)), dict(zip(fns, candidates)), use_java=use_java)


def _report(fns, references, candidates, use_java, scenes):
    report = {"scores": score_split(fns, references, candidates, use_java), "captions": dict(zip(fns, candidates))}
    if scenes is not None:  # shapes data: how many captions are fully true of their picture
        report["fully_true"] = fully_true_rates(report["captions"], scenes)
    return report


def evaluate_model(model, embeds, fns, fn_to_captions, beam=0, max_len=MAX_LEN, source="captions", use_java=None,
                   scenes=None, length_alpha=LENGTH_ALPHA, no_repeat_ngram=NO_REPEAT_NGRAM):
    """Caption ``embeds`` and score them against the references of ``fns`` (and the ``scenes``, if given)."""
    references = captions_for_fns(fns, fn_to_captions, source)
    candidates = caption_embeddings(model, embeds, beam=beam, max_len=max_len, length_alpha=length_alpha,
                                    no_repeat_ngram=no_repeat_ngram)
    return _report(fns, references, candidates, use_java, scenes)


def evaluate_baseline(train_embeds, train_captions, embeds, fns, fn_to_captions, k=5, source="captions",
                      use_java=None, scenes=None):
    """The same report for nearest-neighbour caption retrieval on the same features."""
    references = captions_for_fns(fns, fn_to_captions, source)
    candidates = nearest_neighbour_captions(train_embeds, train_captions, embeds, k=k)
    return _report(fns, references, candidates, use_java, scenes)


def read_images(source, fns):
    """RGB arrays of the named images from a zip (matched by base name) or a folder."""
    images = []
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            members = {os.path.basename(name): name for name in zf.namelist()}
            for fn in fns:
                member = members.get(fn) or members.get(os.path.basename(fn))
                if member is None:
                    raise CapstoneError(f"{source}: no image named {fn}")
                images.append(decode_image_from_buf(zf.read(member), name=f"{source}:{member}"))
    else:
        for fn in fns:
            with open(os.path.join(source, fn), "rb") as f:
                images.append(decode_image_from_buf(f.read(), name=fn))
    return images


def examples_figure(images, generated, references, decoder, columns=4):
    """A matplotlib Figure: each image with its generated caption (bold) and one reference caption
    (grey); the heading says which decoder wrote the bold ones (e.g. "greedy", "beam3")."""
    import textwrap

    from matplotlib.figure import Figure  # not pyplot: a file, whatever backend a notebook uses

    rows = int(np.ceil(len(images) / columns))
    fig = Figure(figsize=(4 * columns, 5.2 * rows + 0.6))
    fig.suptitle(f"bold: the model's caption ({decoder});  grey: one of the human reference captions",
                 fontsize=12)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, caption, refs in zip(axes.ravel(), images, generated, references):
        ax.imshow(image)
        ax.set_title("\n".join(textwrap.wrap(caption, 38)), fontsize=10, fontweight="bold")
        ax.text(0.5, -0.04, "\n".join(textwrap.wrap("ref: " + refs[0], 44)), transform=ax.transAxes,
                ha="center", va="top", fontsize=8, color="dimgray")
    fig.tight_layout(h_pad=3.0)  # room under each image for its reference caption
    return fig


def plot_examples(images, generated, references, path, decoder="greedy", columns=4):
    """``examples_figure`` as a PNG at ``path`` (written atomically)."""
    from capstone.support.atomic import atomic_open

    fig = examples_figure(images, generated, references, decoder, columns)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    with atomic_open(path, "wb") as f:
        f.write(buffer.getvalue())
