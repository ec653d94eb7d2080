"""keras_utils: a fresh tf.compat.v1 session, and the fit callbacks with a tiny Keras 3 model."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_utils


@pytest.fixture
def session():
    s = keras_utils.reset_tf_session()
    yield s
    s.close()
    tf.compat.v1.reset_default_graph()


def test_reset_tf_session_runs_graph_code_and_a_second_reset_starts_empty(session):
    assert isinstance(session, tf.compat.v1.InteractiveSession)
    assert tf.compat.v1.get_default_session() is session
    assert session.graph is tf.compat.v1.get_default_graph()
    assert session._config.gpu_options.allow_growth
    with tf.compat.v1.get_default_graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")  # [batch]
        y = 2.0 * x + 1.0
    np.testing.assert_allclose(session.run(y, {x: [1.0, 2.5]}), [3.0, 6.0])
    old_graph = session.graph
    assert len(old_graph.get_operations()) > 0

    fresh = keras_utils.reset_tf_session()
    try:
        with pytest.raises(RuntimeError, match="closed Session"):
            session.run(y, {x: [1.0]})  # the old session was closed
        assert fresh.graph is not old_graph
        assert fresh.graph is tf.compat.v1.get_default_graph()
        assert fresh.graph.get_operations() == []
        assert tf.executing_eagerly()  # eager mode stays on outside graph contexts
    finally:
        fresh.close()


def test_reset_inside_a_graph_context_is_a_clear_error(session):
    from capstone.errors import CapstoneError

    with tf.Graph().as_default():
        with pytest.raises(CapstoneError, match="outside"):
            keras_utils.reset_tf_session()
    with session.graph.as_default():
        three = tf.constant(3)
    assert session.run(three) == 3  # the session still works: nothing was torn down


def test_keras_model_path_adds_the_keras_suffix():
    assert keras_utils.keras_model_path("model.{0:03d}") == "model.{0:03d}.keras"
    assert keras_utils.keras_model_path("cifar.{0:03d}.hdf5") == "cifar.{0:03d}.hdf5"
    assert keras_utils.keras_model_path("m.H5") == "m.H5"
    assert keras_utils.keras_model_path("m.keras") == "m.keras"


def test_callbacks_show_progress_and_save_reloadable_models_each_epoch(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    x = np.random.rand(32, 4).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], dtype="float32")
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer="sgd", loss="mse")
    file_name = str(tmp_path / "models" / "tiny.{0:03d}")
    model.fit(x, y, batch_size=8, epochs=2, verbose=0,
              callbacks=[keras_utils.TqdmProgressCallback(), keras_utils.ModelSaveCallback(file_name)])

    saved = sorted(os.listdir(tmp_path / "models"))
    assert saved == ["tiny.000.keras", "tiny.001.keras"]  # no temporary files left behind
    reloaded = keras.models.load_model(tmp_path / "models" / "tiny.001.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)

    out, err = capsys.readouterr()
    assert f"Model saved in {tmp_path / 'models' / 'tiny.000.keras'}" in out
    assert "Epoch 1/2" in err and "Epoch 2/2" in err
    assert "4/4" in err  # 32 samples / batch 8 = 4 steps per epoch
    assert "loss=" in err
