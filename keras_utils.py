"""What the course's notebooks import from ``keras_utils``, for TensorFlow 2 / Keras 3.

* ``reset_tf_session()`` -- a fresh ``tf.compat.v1`` graph and session for graph code;
* ``TqdmProgressCallback`` -- a tqdm bar per epoch for ``model.fit``;
* ``ModelSaveCallback(file_name)`` -- save the model after every epoch.
"""

import os
import tempfile

import keras
import tensorflow as tf
from tqdm.auto import tqdm

from capstone.errors import CapstoneError

KERAS_MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")  # the file types keras.models.save_model writes


def reset_tf_session():
    """Close the default session, empty the default graph, and open a new InteractiveSession.

    Reads: the current default session and graph. Creates: a new, empty default graph and
    a ``tf.compat.v1.InteractiveSession`` on it (GPU memory grows as needed instead of being
    taken all at once), which is returned and is the default session until closed.

    Eager execution stays on in TensorFlow 2, and placeholders cannot be made eagerly, so
    build the graph inside the graph's context::

        s = reset_tf_session()
        with s.graph.as_default():
            x = tf.compat.v1.placeholder(tf.float32, [None])  # [batch]
            y = 2 * x
        s.run(y, {x: [1, 2]})  # -> array([2., 4.])
    """
    current = tf.compat.v1.get_default_session()
    try:
        # Keras' name counters and cached state go too, as K.clear_session() did in the course.
        keras.backend.clear_session()
        tf.compat.v1.reset_default_graph()
    except AssertionError:  # TensorFlow refuses to reset a graph stack that is in use
        raise CapstoneError(
            "reset_tf_session(): called inside a `with graph.as_default():` block; call it outside"
        ) from None
    if current is not None:
        current.close()
    config = tf.compat.v1.ConfigProto()
    config.gpu_options.allow_growth = True
    return tf.compat.v1.InteractiveSession(config=config)


class TqdmProgressCallback(keras.callbacks.Callback):
    """One tqdm bar per epoch with the running loss and metrics; use with ``model.fit(verbose=0)``.

    Prints e.g. ``Epoch 1/2: 100%|####| 4/4 [00:00, loss=0.5123]`` (to stderr, or a
    widget in a notebook).
    """

    def on_train_begin(self, logs=None):
        self.epochs = self.params.get("epochs")
        self.progress_bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self.progress_bar = tqdm(total=self.params.get("steps"), desc=f"Epoch {epoch + 1}/{self.epochs}",
                                 unit="batch")

    def on_train_batch_end(self, batch, logs=None):
        self.progress_bar.update(1)
        self.progress_bar.set_postfix(_rounded(logs), refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        self.progress_bar.set_postfix(_rounded(logs))  # now with the validation metrics too
        self.progress_bar.close()


def _rounded(logs):
    """{"loss": 0.51234567} -> {"loss": "0.5123"}: metric values as short strings."""
    return {name: f"{float(value):.4f}" for name, value in (logs or {}).items()}


def keras_model_path(path):
    """``path`` with ".keras" added unless it already ends in a suffix Keras 3 can save to.

    "model.{0:03d}" -> "model.{0:03d}.keras"; "model.{0:03d}.hdf5" stays as it is.
    """
    return path if path.lower().endswith(KERAS_MODEL_SUFFIXES) else path + ".keras"


class ModelSaveCallback(keras.callbacks.Callback):
    """Save the model to ``file_name.format(epoch)`` after each epoch, as the course did.

    ``epoch`` is Keras' 0-based index: with file_name "model.{0:03d}" the first epoch
    writes "model.000.keras" (Keras 3 needs the .keras suffix, so it is added when missing).
    Each file is written beside its final name and then renamed, so a crash mid-save never
    leaves a broken model file. Reload with ``keras.models.load_model(path)``.
    """

    def __init__(self, file_name):
        super().__init__()
        self.file_name = file_name

    def on_epoch_end(self, epoch, logs=None):
        model_path = keras_model_path(self.file_name.format(epoch))
        directory, name = os.path.split(os.path.abspath(model_path))
        suffix = os.path.splitext(name)[1]  # Keras picks the file format from the suffix
        os.makedirs(directory, exist_ok=True)
        fd, temp_path = tempfile.mkstemp(prefix=f".{name}.", suffix=suffix, dir=directory)
        os.close(fd)
        try:
            self.model.save(temp_path)
            os.replace(temp_path, model_path)
        finally:
            if os.path.exists(temp_path):
                os.remove(temp_path)
        print(f"Model saved in {model_path}")
