"""The peer-reviewed part: the captions a model gets most and least right, as one picture.

Each validation image's greedy caption is scored with CIDEr against its reference captions
(pycocoevalcap's Cider, the metric ``capstone.evaluation.metrics`` reports for a corpus, here
per image); the ``k`` best and ``k`` worst are drawn in a grid and saved as a PNG.
"""

import numpy as np
from pycocoevalcap.cider.cider import Cider

from capstone.captions import split_sentence
from capstone.support.atomic import atomic_open


def cider_per_image(references, candidates):
    """{key: [reference, ...]}, {key: caption} -> {key: CIDEr of that caption} (corpus document frequencies)."""
    keys = list(candidates)
    gts = {key: [" ".join(split_sentence(ref)) for ref in references[key]] for key in keys}
    res = {key: [" ".join(split_sentence(candidates[key])) or "empty"] for key in keys}
    _, scores = Cider().compute_score(gts, res)
    return dict(zip(keys, map(float, scores)))


def best_and_worst(references, candidates, k=10):
    """(best k, worst k) lists of (key, CIDEr), best first / worst first."""
    scores = cider_per_image(references, candidates)
    ranked = sorted(scores.items(), key=lambda item: (-item[1], str(item[0])))
    k = min(k, len(ranked) // 2)
    return ranked[:k], ranked[::-1][:k]


def plot_best_and_worst(best, worst, images, candidates, references, path, columns=5):
    """A grid: the best rows, then the worst rows; each picture titled with its caption and CIDEr.

    images: {key: RGB array}; written atomically to ``path`` (PNG); returns the Figure.
    """
    from matplotlib.figure import Figure

    rows_each = -(-len(best) // columns)
    fig = Figure(figsize=(3.2 * columns, 3.6 * 2 * rows_each))
    axes = np.asarray(fig.subplots(2 * rows_each, columns, squeeze=False))
    for ax in axes.ravel():
        ax.axis("off")
    for block, (title, chosen) in enumerate((("good", best), ("wrong", worst))):
        for index, (key, score) in enumerate(chosen):
            ax = axes[block * rows_each + index // columns, index % columns]
            ax.imshow(images[key])
            ax.set_title(f"{title}: CIDEr {score:.2f}\n{_wrap(candidates[key])}\nref: {_wrap(references[key][0])}",
                         fontsize=7)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=80)
    return fig


def _wrap(text, width=38):
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line])[:2 * width + 1]
