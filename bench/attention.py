"""How fast is the attention decoder? Ours against the TensorFlow tutorial's model in Keras 3.

Same sizes (7 x 7 x 1280 EfficientNet-Lite0 grids squeezed to 120 per location, attention 256,
words 100-d, LSTM 300, a COCO-sized vocabulary of 8,769), same batches of 64 captions of COCO-like
lengths, Adam(0.001), the loss masked at PAD:

  training, steps/s:
    (a) ours:   capstone.attention.AttentionDecoder, one Session.run per step
    (b) Keras 3: the tutorial's model (Bahdanau attention + an LSTM cell), a Python loop over
                 the words inside a tf.function with GradientTape, as the tutorial trains it
  captioning, images/s (greedy, max 20 words):
    (c) ours:   FinalModel's in-graph decoder, one Session.run per batch
    (d) Keras 3: the tutorial's evaluate(): one decoder call per word per image

Where the CPU multiplies bfloat16 natively (capstone/support/precision.py), training is also timed
with ours in bfloat16 and the peer under Keras' "mixed_bfloat16" policy. Each is timed in --rounds
interleaved rounds (the best counts). The last line is ``ratio: X.XX``: training, ours in the
precision ``--precision auto`` trains in here over the fastest peer in any precision; the
captioning ratio is printed above it.
Targets on 2 CPU cores: training >= 1.5, captioning >= 10.

    python bench/attention.py
"""

import argparse
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # synthetic.untrained_run

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from capstone.captions import batch_captions_to_matrix  # noqa: E402
from capstone.config import ModelConfig  # noqa: E402

VOCAB, PAD, START, END = 8769, 0, 2, 3
GRID, DEPTH, BATCH = 7, 1280, 64
CONFIG = ModelConfig(decoder="attention", img_embed_size=DEPTH)  # course sizes, attention 256
v1 = tf.compat.v1


def make_batches(n, seed=0):
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n):
        words = np.clip(np.round(rng.normal(10.5, 2.5, BATCH)), 5, 18).astype(int)
        captions = [[START, *rng.integers(END + 1, VOCAB, k), END] for k in words]
        features = rng.gamma(0.5, 0.8, (BATCH, GRID, GRID, DEPTH)).astype(np.float32)
        batches.append((features, batch_captions_to_matrix(captions, PAD).astype(np.int32)))
    return batches


def ours_trainer(batches, graph_precision="float32"):
    from capstone.attention import AttentionDecoder
    from capstone.support import precision

    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        precision.set_graph_precision(graph_precision)
        decoder = AttentionDecoder(VOCAB, PAD, CONFIG)
        train_op = v1.train.AdamOptimizer(0.001).minimize(decoder.loss)
        session = v1.Session(graph=graph)
        session.run(v1.global_variables_initializer())
    feeds = [{decoder.img_embeds: f, decoder.sentences: s} for f, s in batches]
    return lambda i: session.run(train_op, feeds[i % len(feeds)])


class TutorialDecoder(keras.Model):
    """The tutorial's decoder with an LSTM cell: attention over the squeezed grid at every word."""

    def __init__(self):
        super().__init__()
        c = CONFIG
        self.encoder = keras.layers.Dense(c.img_embed_bottleneck, activation="elu")
        self.init_h = keras.layers.Dense(c.lstm_units, activation="tanh")
        self.init_c = keras.layers.Dense(c.lstm_units, activation="tanh")
        self.w1, self.w2 = keras.layers.Dense(c.attention_units), keras.layers.Dense(c.attention_units)
        self.v = keras.layers.Dense(1)
        self.gate = keras.layers.Dense(1, activation="sigmoid")
        self.embedding = keras.layers.Embedding(VOCAB, c.word_embed_size)
        self.lstm = keras.layers.LSTMCell(c.lstm_units)
        self.fc1 = keras.layers.Dense(c.logit_bottleneck, activation="elu")
        self.fc2 = keras.layers.Dense(VOCAB)

    def start(self, grid):
        features = self.encoder(tf.reshape(grid, [tf.shape(grid)[0], GRID * GRID, DEPTH]))
        mean = tf.reduce_mean(features, 1)
        return features, self.w1(features), [self.init_h(mean), self.init_c(mean)]

    def word(self, words, features, projected, state):
        weights = tf.nn.softmax(self.v(tf.tanh(projected + self.w2(state[0])[:, None]))[..., 0], axis=1)
        context = self.gate(state[0]) * tf.reduce_sum(weights[..., None] * features, 1)
        out, state = self.lstm(tf.concat([self.embedding(words), context], 1), state)
        return self.fc2(self.fc1(tf.concat([out, context], 1))), state, weights


def keras_trainer(batches, policy=None):
    """policy: a Keras dtype policy for the model's layers ("mixed_bfloat16"), None for float32."""
    keras.mixed_precision.set_global_policy(policy or "float32")
    model, optimizer = TutorialDecoder(), keras.optimizers.Adam(0.001)
    keras.mixed_precision.set_global_policy("float32")
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")

    @tf.function
    def train_step(grid, sentences):
        with tf.GradientTape() as tape:
            features, projected, state = model.start(grid)
            total, count = 0.0, 0.0
            for t in range(sentences.shape[1] - 1):  # the tutorial's loop over the words
                logits, state, _ = model.word(sentences[:, t], features, projected, state)
                mask = tf.cast(sentences[:, t + 1] != PAD, tf.float32)
                total += tf.reduce_sum(tf.cast(loss_fn(sentences[:, t + 1], logits), tf.float32) * mask)
                count += tf.reduce_sum(mask)
            loss = total / count
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    tensors = [(tf.constant(f), tf.constant(s)) for f, s in batches]
    return lambda i: train_step(*tensors[i % len(tensors)])


def keras_caption(model, grid, max_len=20):
    """The tutorial's evaluate(): one image, one decoder call per word."""
    features, projected, state = model.start(grid[None])
    word, tokens = tf.constant([START]), []
    for _ in range(max_len):
        logits, state, _ = model.word(word, features, projected, state)
        word = tf.argmax(logits, 1, output_type=tf.int32)
        tokens.append(int(word[0]))
        if tokens[-1] == END:
            break
    return tokens


def best_rate(function, count, rounds):
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        best = max(best, count / (time.perf_counter() - started))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=64, help="images captioned by ours per round")
    parser.add_argument("--peer-images", type=int, default=4, help="images captioned by the per-word loop")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; tf {tf.__version__}")
    from capstone.support import precision

    batches = make_batches(4)
    trainers = {"(a) ours: AttentionDecoder": ours_trainer(batches), "(b) Keras 3 tutorial model": keras_trainer(batches)}
    auto = precision.resolve("auto", path="train:attention")  # what `train` runs here
    if precision.bfloat16_hardware():  # each precision of ours meets the peer in the same one
        trainers["(a) ours: AttentionDecoder, bfloat16"] = ours_trainer(batches, "bfloat16")
        trainers["(b) Keras 3 tutorial model, mixed_bfloat16"] = keras_trainer(batches, "mixed_bfloat16")
    for step in trainers.values():  # warm up (tf.function tracing, first session runs)
        for i in range(2):
            step(i)
    speeds = {name: 0.0 for name in trainers}
    for _ in range(args.rounds):
        for name, step in trainers.items():
            speeds[name] = max(speeds[name], best_rate(lambda: [step(i) for i in range(args.steps)], args.steps, 1))
    for name, speed in speeds.items():
        print(f"  training  {name:44s} {speed:7.2f} steps/s")

    from capstone.final_model import FinalModel
    from synthetic import untrained_run

    grids = batches[0][0]
    with tempfile.TemporaryDirectory() as tmp:
        model = FinalModel.load(untrained_run(tmp, VOCAB, CONFIG, seed=0))
    peer = TutorialDecoder()
    keras_caption(peer, grids[0])  # build it
    ours_rate = best_rate(lambda: model.captions(embeddings=grids[:args.images]), args.images, args.rounds)
    peer_rate = best_rate(lambda: [keras_caption(peer, g) for g in grids[:args.peer_images]], args.peer_images, 1)
    print(f"  captioning (c) ours in-graph greedy          {ours_rate:7.1f} images/s")
    print(f"  captioning (d) Keras 3 per-word loop          {peer_rate:7.1f} images/s")
    print(f"captioning ratio: {ours_rate / peer_rate:.1f} (target >= 10)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    ours = speeds["(a) ours: AttentionDecoder" + (", bfloat16" if auto == "bfloat16" else "")]
    peer = max(speed for name, speed in speeds.items() if name.startswith("(b)"))
    print(f"training: ours in {auto} (what --precision auto trains in here) / the fastest peer in any precision")
    print(f"ratio: {ours / peer:.2f}")


if __name__ == "__main__":
    main()
