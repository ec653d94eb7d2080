"""The peers bench/train_step.py times our trainer against, and the problem they all train on.

Each peer runs in a subprocess of its own (``python bench/peers.py --worker KIND --data FILE``),
driven line by line by a ``Worker`` so its timed rounds interleave with ours:

  legacy       the course notebook's graph: legacy Keras layers + tf.compat.v1 LSTMCell + dynamic_rnn
               (needs tf_keras and TF_USE_LEGACY_KERAS=1, see bench/requirements.txt)
  keras3       a Keras 3 functional model with LSTM(return_sequences=True) and train_on_batch
  keras3_bf16  the same under Keras' "mixed_bfloat16" policy (bfloat16 compute, float32 variables):
               the peer's own answer to bfloat16 hardware, so ours in bfloat16 meets its equal

Every peer loads the same initial weights as ours and reports its losses on the same first batches,
so the bench can show that the maths agree before it compares speeds.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

VOCAB_SIZE, PAD_IDX, START_IDX, END_IDX = 8769, 0, 2, 3  # COCO-sized vocabulary, course's special tokens first
BATCH_SIZE, MAX_LEN, LEARNING_RATE = 64, 20, 0.001
KINDS = {"legacy": {"TF_USE_LEGACY_KERAS": "1"}, "keras3": {}, "keras3_bf16": {}}  # worker kind -> its environment


# -- the shared problem ------------------------------------------------------------------------


def make_batches(n_batches, seed=0):
    """[(img_embeds [64, 2048] float32, sentences [64, <=20] int32)], captions of COCO-like lengths.

    COCO captions have 10.5 +- 2.5 words; with START and END and cut at max_len, about 65 % of
    the [64, T-1] target positions are words, the rest PAD.
    """
    from capstone.captions import batch_captions_to_matrix

    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n_batches):
        n_words = np.clip(np.round(rng.normal(10.5, 2.5, BATCH_SIZE)), 5, 30).astype(int)
        captions = [[START_IDX, *rng.integers(END_IDX + 1, VOCAB_SIZE, n), END_IDX] for n in n_words]
        sentences = batch_captions_to_matrix(captions, PAD_IDX, max_len=MAX_LEN).astype(np.int32)
        # InceptionV3 embeddings are averages of ReLUs: non-negative, mostly small
        embeds = rng.gamma(0.5, 0.8, (BATCH_SIZE, 2048)).astype(np.float32)
        batches.append((embeds, sentences))
    return batches


def model_config():
    from capstone.config import ModelConfig
    return ModelConfig()  # the course's sizes


class Timer:
    """Runs ``step(i)`` and measures wall and CPU seconds per step."""

    def __init__(self, step):
        self.step = step
        self.done = 0

    def run(self, steps):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            self.step(self.done)
            self.done += 1
        return {"seconds": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "steps": steps}


# -- (b) the course's graph, legacy Keras ---------------------------------------------------------


def legacy_worker(data):
    """The course notebook's decoder as it was written for TF1, fed our weights. Runs in its own process."""
    import tensorflow as tf

    from capstone.support.tf_session import session_config

    v1 = tf.compat.v1
    v1.disable_eager_execution()
    L = tf.keras.layers  # tf_keras, because TF_USE_LEGACY_KERAS=1
    config = model_config()

    img_embeds = v1.placeholder("float32", [None, config.img_embed_size])
    sentences = v1.placeholder("int32", [None, None])
    img_embed_to_bottleneck = L.Dense(config.img_embed_bottleneck, activation="elu")
    img_embed_bottleneck_to_h0 = L.Dense(config.lstm_units, activation="elu")
    word_embed = L.Embedding(VOCAB_SIZE, config.word_embed_size)
    lstm = v1.nn.rnn_cell.LSTMCell(config.lstm_units)
    token_logits_bottleneck = L.Dense(config.logit_bottleneck, activation="elu")
    token_logits = L.Dense(VOCAB_SIZE)
    c0 = h0 = img_embed_bottleneck_to_h0(img_embed_to_bottleneck(img_embeds))
    word_embeds = word_embed(sentences[:, :-1])
    hidden_states, _ = v1.nn.dynamic_rnn(lstm, word_embeds, initial_state=v1.nn.rnn_cell.LSTMStateTuple(c0, h0))
    flat_hidden_states = tf.reshape(hidden_states, [-1, config.lstm_units])
    flat_token_logits = token_logits(token_logits_bottleneck(flat_hidden_states))
    flat_ground_truth = tf.reshape(sentences[:, 1:], [-1])
    flat_loss_mask = tf.not_equal(flat_ground_truth, PAD_IDX)
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=flat_ground_truth, logits=flat_token_logits)
    loss = tf.reduce_mean(tf.boolean_mask(xent, flat_loss_mask))
    train_step = v1.train.AdamOptimizer(LEARNING_RATE).minimize(loss)

    session = v1.Session(config=session_config())
    session.run(v1.global_variables_initializer())
    w = data["weights"]
    # TF1's LSTMCell keeps one kernel [input + units, 4 * units] (gates i, j, f, o, as ours):
    # our input_kernel on top of our recurrent_kernel.
    values = {
        img_embed_to_bottleneck: [w["img_embed_to_bottleneck/kernel"], w["img_embed_to_bottleneck/bias"]],
        img_embed_bottleneck_to_h0: [w["img_embed_bottleneck_to_h0/kernel"], w["img_embed_bottleneck_to_h0/bias"]],
        word_embed: [w["word_embed/embeddings"]],
        lstm: [np.concatenate([w["lstm/input_kernel"], w["lstm/recurrent_kernel"]]), w["lstm/bias"]],
        token_logits_bottleneck: [w["token_logits_bottleneck/kernel"], w["token_logits_bottleneck/bias"]],
        token_logits: [w["token_logits/kernel"], w["token_logits/bias"]],
    }
    for layer, layer_values in values.items():
        for variable, value in zip(layer.weights, layer_values):
            variable.load(value, session)

    feeds = [{img_embeds: e, sentences: s} for e, s in data["batches"]]
    losses = [float(session.run([loss, train_step], feeds[i % len(feeds)])[0]) for i in range(data["check_steps"])]
    return losses, Timer(lambda i: session.run(train_step, feeds[i % len(feeds)]))


# -- (c) idiomatic Keras 3 --------------------------------------------------------------------------


def keras3_worker(data, policy=None):
    """A Keras 3 functional model of the same decoder, trained with train_on_batch. Runs in its own process.
    policy: a Keras dtype policy such as "mixed_bfloat16" (None: float32)."""
    import keras
    import tensorflow as tf

    from capstone.support.tf_session import session_config

    if policy:
        keras.mixed_precision.set_global_policy(policy)

    threads = session_config()
    tf.config.threading.set_intra_op_parallelism_threads(threads.intra_op_parallelism_threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads.inter_op_parallelism_threads)
    config = model_config()
    L = keras.layers

    img_embeds = keras.Input((config.img_embed_size,), name="img_embeds")
    words = keras.Input((None,), dtype="int32", name="words")  # all tokens but the last
    bottleneck = L.Dense(config.img_embed_bottleneck, activation="elu")
    to_h0 = L.Dense(config.lstm_units, activation="elu")
    embed = L.Embedding(VOCAB_SIZE, config.word_embed_size)
    lstm = L.LSTM(config.lstm_units, return_sequences=True)
    logits_bottleneck = L.Dense(config.logit_bottleneck, activation="elu")
    logits = L.Dense(VOCAB_SIZE)
    h0 = to_h0(bottleneck(img_embeds))
    hidden_states = lstm(embed(words), initial_state=[h0, h0])
    outputs = logits(logits_bottleneck(hidden_states))
    if policy:  # Keras' advice for mixed precision: the softmax and the loss in float32
        outputs = L.Activation("linear", dtype="float32")(outputs)
    model = keras.Model([img_embeds, words], outputs)
    # epsilon as TF1's AdamOptimizer, so the losses can be compared with ours
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE, epsilon=1e-8),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    w = data["weights"]
    units = config.lstm_units

    def keras_gates(matrix):  # ours i, j, f, o -> Keras i, f, c(=j), o
        i, j, f, o = np.split(matrix, 4, axis=-1)
        return np.concatenate([i, f, j, o], axis=-1)

    lstm_bias = w["lstm/bias"].copy()
    lstm_bias[2 * units:3 * units] += 1.0  # our forget bias of 1, folded into Keras' f bias
    bottleneck.set_weights([w["img_embed_to_bottleneck/kernel"], w["img_embed_to_bottleneck/bias"]])
    to_h0.set_weights([w["img_embed_bottleneck_to_h0/kernel"], w["img_embed_bottleneck_to_h0/bias"]])
    embed.set_weights([w["word_embed/embeddings"]])
    lstm.set_weights([keras_gates(w["lstm/input_kernel"]), keras_gates(w["lstm/recurrent_kernel"]),
                      keras_gates(lstm_bias)])
    logits_bottleneck.set_weights([w["token_logits_bottleneck/kernel"], w["token_logits_bottleneck/bias"]])
    logits.set_weights([w["token_logits/kernel"], w["token_logits/bias"]])

    def batch(i):
        embeds, sentences = data["batches"][i % len(data["batches"])]
        targets = sentences[:, 1:]
        mask = (targets != PAD_IDX).astype(np.float32)
        # Keras divides the weighted sum by the number of positions; scaling the weights makes the
        # loss the mean over real tokens, as in the course.
        return [embeds, sentences[:, :-1]], targets, mask * (mask.size / mask.sum())

    losses = [float(model.train_on_batch(*batch(i))) for i in range(data["check_steps"])]
    return losses, Timer(lambda i: model.train_on_batch(*batch(i)))


def serve_worker(kind, data_path):
    """Worker process: build, report check losses and warm up, then time rounds on request."""
    data = dict(np.load(data_path, allow_pickle=True).item())
    if kind == "legacy":
        losses, timer = legacy_worker(data)
    else:
        losses, timer = keras3_worker(data, policy="mixed_bfloat16" if kind == "keras3_bf16" else None)
    timer.run(data["warmup"])
    print(json.dumps({"losses": losses}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        print(json.dumps(timer.run(int(line))), flush=True)


class Worker:
    """A peer in a subprocess, driven line by line (so its rounds interleave with ours)."""

    def __init__(self, kind, data_path):
        self.log = tempfile.TemporaryFile("w+")  # its TensorFlow chatter, shown only if it fails
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", kind, "--data", data_path], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log, text=True, env={**os.environ, **KINDS[kind]})
        self.kind = kind
        self._losses = None

    def _reply(self):
        for line in self.process.stdout:
            if line.startswith("{"):  # libraries may print other lines
                return json.loads(line)
        self.log.seek(0)
        raise RuntimeError(f"{self.kind} worker exited with status {self.process.wait()}:\n{self.log.read()[-3000:]}")

    def losses(self):
        if self._losses is None:
            self._losses = self._reply()["losses"]
        return self._losses

    def run(self, steps):
        self.losses()  # the first reply: built and warmed up
        self.process.stdin.write(f"{steps}\n")
        self.process.stdin.flush()
        return self._reply()

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait()
        self.log.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a peer of bench/train_step.py, driven through stdin")
    parser.add_argument("--worker", choices=sorted(KINDS), required=True)
    parser.add_argument("--data", required=True, help="the .npy of shared weights and batches train_step.py wrote")
    arguments = parser.parse_args()
    serve_worker(arguments.worker, arguments.data)
