"""Where the attention decoder looked: one panel per word, the image under that word's weights.

    maps = model.attention_maps(images=pixels[None])[0]      # [(word, weights [G, G]), ...]
    save_attention_plot(pixels, maps, "attention.png")        # the TensorFlow tutorial's figure

The G x G weights are upsampled smoothly to the image's size and drawn over it, brightest where
the word looked most.
"""

import io
import math

import cv2
import numpy as np

from capstone.support.atomic import atomic_open

COLUMNS = 5
ATTENTION_EXAMPLES = 3  # pictures the demos draw in attention.png


def upsample(weights, size):
    """[G, G] weights -> [size, size], scaled to 0..1 (the brightest location is 1)."""
    weights = np.asarray(weights, dtype=np.float32)
    big = cv2.resize(weights, (size, size), interpolation=cv2.INTER_CUBIC)
    big -= big.min()
    return big / big.max() if big.max() > 0 else big


def attention_figure(image, maps, title=None, columns=COLUMNS):
    """A matplotlib Figure: the image alone, then one panel per (word, weights) over it."""
    from matplotlib.figure import Figure  # not pyplot: a file, whatever backend a notebook uses

    image = np.clip(np.asarray(image, dtype=np.float32), 0, 255).astype(np.uint8)  # RGB [S, S, 3]
    panels = len(maps) + 1
    rows = math.ceil(panels / columns)
    fig = Figure(figsize=(2.4 * min(columns, panels), 2.6 * rows))
    axes = fig.subplots(rows, min(columns, panels), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    axes.ravel()[0].imshow(image)
    axes.ravel()[0].set_title(title or "image", fontsize=9)
    for ax, (word, weights) in zip(axes.ravel()[1:], maps):
        ax.imshow(image)
        ax.imshow(upsample(weights, image.shape[0]), cmap="gray", alpha=0.6, vmin=0, vmax=1)
        ax.set_title(word, fontsize=11, fontweight="bold")
    fig.tight_layout()
    return fig


def attention_png(image, maps, title=None):
    """The figure as PNG bytes (for a web page)."""
    buffer = io.BytesIO()
    attention_figure(image, maps, title).savefig(buffer, format="png", dpi=72)
    return buffer.getvalue()


def save_attention_plot(image, maps, path, title=None):
    """Write the figure to ``path`` as a PNG, atomically."""
    png = attention_png(image, maps, title)
    with atomic_open(path, "wb") as f:
        f.write(png)
    return path


def save_attention_figures(pictures, maps, names, path):
    """One attention figure per test picture, stacked into one PNG."""
    panels = [cv2.imdecode(np.frombuffer(attention_png(picture, words, title=name), np.uint8), cv2.IMREAD_COLOR)
              for picture, words, name in zip(pictures, maps, names)]
    width = max(panel.shape[1] for panel in panels)
    padded = [cv2.copyMakeBorder(p, 0, 0, 0, width - p.shape[1], cv2.BORDER_CONSTANT, value=(255, 255, 255))
              for p in panels]
    ok, png = cv2.imencode(".png", np.vstack(padded))
    with atomic_open(path, "wb") as f:
        f.write(png.tobytes())
