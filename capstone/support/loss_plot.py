"""loss.png: a run's training curves, the epoch ``best/`` keeps marked.

One panel of cross-entropy per epoch (train and validation); after self-critical epochs a second one of
their validation CIDEr and training rewards. ``train`` redraws it after every epoch, from history.json's
records alone, so a resumed run draws the same picture.
"""

from capstone.support import checkpoints
from capstone.support.atomic import atomic_open


def history_figure(history):
    """Train and validation loss per epoch, the best epoch (what ``best/`` keeps) marked: a matplotlib Figure."""
    # A Figure without pyplot: drawing a file never touches the backend a notebook has chosen.
    from matplotlib.figure import Figure

    kept = checkpoints.best_of(history)
    tuned = [h for h in history if checkpoints.is_self_critical(h)]
    history = [h for h in history if not checkpoints.is_self_critical(h)]
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(11, 4) if tuned else (6, 4))
    ax, *cider_ax = fig.subplots(1, 2) if tuned else [fig.subplots()]
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    if tuned:
        plot_self_critical(cider_ax[0], tuned, kept)
    best = checkpoints.best_of(history)
    where = "kept in best/" if best is kept else "self-critical training started here"
    if best is not None:
        ax.plot(epochs, [h.get("val_loss") for h in history], "o-", label="validation")
        ax.axvline(best["epoch"], color="gray", linestyle="--", linewidth=1)
        mark_best(ax, best["epoch"], best["val_loss"], f"val {best['val_loss']:.3f} ({where})")
    finish_axes(ax, "epoch", "cross-entropy per token")
    fig.tight_layout()
    return fig


def plot_self_critical(ax, tuned, kept):
    """The self-critical epochs' validation CIDEr and train rewards, the one best/ keeps marked."""
    epochs = [h["epoch"] for h in tuned]
    ax.plot(epochs, [h["val_cider"] for h in tuned], "o-", label="validation CIDEr (greedy)")
    ax.plot(epochs, [h["train_greedy_reward"] for h in tuned], "o-", label="train CIDEr-D (greedy)")
    ax.axhline(tuned[0]["start_val_cider"], color="gray", linestyle="--", linewidth=1, label="validation CIDEr at start")
    if kept in tuned:
        mark_best(ax, kept["epoch"], kept["val_cider"], f"CIDEr {kept['val_cider']:.3f} (kept in best/)")
    finish_axes(ax, "epoch (self-critical)", "CIDEr-D")


def mark_best(ax, epoch, value, what):
    """The star both panels put on their best epoch, labelled "best: epoch N, <what>"."""
    ax.plot([epoch], [value], "*", color="crimson", markersize=14, label=f"best: epoch {epoch}, {what}")


def finish_axes(ax, xlabel, ylabel):
    """Axis names, a light grid and the legend: the same on both panels."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()


def plot_history(history, path):
    """``history_figure`` as a PNG (written atomically)."""
    with atomic_open(path, "wb") as f:
        history_figure(history).savefig(f, format="png", dpi=100)
