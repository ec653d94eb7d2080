"""A checkpoint trained on one device loads on another: nothing in the decoder is cuDNN-only.

The LSTM is ``capstone.layers.LSTMCell`` (matmuls and element-wise ops), so a checkpoint holds
plain variables that any device can hold. Training is pinned with ``Graph.device`` on every graph
``train`` builds; captioning then loads on the default device. On a machine without a GPU the
"/GPU:0" pin is soft-placed on the CPU (the session allows it): the checkpoint is the same either way.
"""

import numpy as np
import pytest
import tensorflow as tf

from capstone.config import ModelConfig, TrainingConfig
from capstone.final_model import FinalModel
from capstone.training import train
from synthetic import make_problem


@pytest.mark.parametrize("device", ["/CPU:0", "/GPU:0"])
def test_a_checkpoint_trained_on_one_device_captions_on_the_default_one(device, tmp_path, monkeypatch):
    built = []
    plain_graph = tf.Graph

    class PinnedGraph(plain_graph):
        """tf.Graph whose every op is placed on ``device``: its device scope is entered at birth, never left."""

        def __init__(self):
            super().__init__()
            self.pin = self.device(device)  # kept: a collected context manager would leave its scope
            self.pin.__enter__()

    def pinned_graph():
        built.append(PinnedGraph())
        return built[-1]

    (train_e, train_c, scenes), (val_e, val_c, val_scenes) = make_problem()
    monkeypatch.setattr(tf, "Graph", pinned_graph)
    train(str(tmp_path), train_e, train_c, val_e, val_c,
          ModelConfig(img_embed_bottleneck=32, word_embed_size=32, lstm_units=64, logit_bottleneck=32),
          TrainingConfig(batch_size=32, n_epochs=3, n_batches_per_epoch=60, n_validation_batches=2, min_count=1),
          progress=False, log=lambda _: None)
    monkeypatch.undo()

    ops = [op for graph in built for op in graph.get_operations()]
    # The variables and the work on them (initialisers and variable reads are colocated with the variables).
    work = [op for op in ops if op.type in {"VarHandleOp", "VariableV2", "MatMul", "BatchMatMulV2", "Tanh",
                                            "Sigmoid", "ResourceApplyAdam", "ApplyAdam", "SparseSoftmaxCrossEntropyWithLogits"}]
    unpinned = [op.name for op in work if tf.DeviceSpec.from_string(op.device).device_type != device[1:4]]
    assert len(work) > 20 and unpinned == []
    assert not [op.type for op in ops if "cudnn" in op.type.lower()]
    model = FinalModel.load(str(tmp_path))  # the default device, and a graph with no pins
    assert not [op.name for op in model.graph.get_operations() if "GPU" in op.device.upper()]
    captions = model.captions(embeddings=val_e)
    right = np.mean([f" {colour} " in f" {text} " and shape in text
                     for text, (colour, shape) in zip(captions, val_scenes)])
    assert right >= 0.9, captions[:5]
