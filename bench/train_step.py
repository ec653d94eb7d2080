"""How fast does the decoder train? Ours against the course's graph and idiomatic Keras 3.

Same architecture (the course's sizes: 2048-d embeddings -> 120 -> LSTM 300, words 100-d,
logits through 120 to a COCO-sized vocabulary of 8,769 tokens), same batches (64 captions of
COCO-like lengths, max_len 20), same initial weights, Adam(0.001):

  (a) ours:    capstone.fast.FastDecoder as training uses it; the course Decoder for reference
  (b) course:  the course notebook's graph, legacy Keras layers + tf.compat.v1 LSTMCell +
               dynamic_rnn, in a subprocess with TF_USE_LEGACY_KERAS=1 (needs tf_keras, see
               bench/requirements.txt)
  (c) Keras 3: a functional model with LSTM(return_sequences=True), train_on_batch, the loss
               masked with sample weights (subprocess)

Each peer first runs ``--check-steps`` steps from the shared initial weights on the same batches;
its losses are compared with ours (the maths must agree). Then every variant is timed in
``--rounds`` interleaved rounds of ``--steps`` steps (warm-up excluded; the best round counts), so a
burst of load from other programs hits all of them alike. ``--levers`` adds variants of ours that
show what each speed-up gives. The last line is ``ratio: X.XX``, ours / the fastest peer, in steps
per second. Target on 2 CPU cores: >= 1.5.

    python bench/train_step.py
    python bench/train_step.py --levers --rounds 2
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

VOCAB_SIZE, PAD_IDX, START_IDX, END_IDX = 8769, 0, 2, 3  # COCO-sized vocabulary, course's special tokens first
BATCH_SIZE, MAX_LEN, LEARNING_RATE = 64, 20, 0.001


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds; the best counts")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before the first round")
    parser.add_argument("--check-steps", type=int, default=5, help="steps whose losses are compared across models")
    parser.add_argument("--batches", type=int, default=5, help="distinct batches, used in turn")
    parser.add_argument("--levers", action="store_true", help="also time variants of ours, one speed-up at a time")
    parser.add_argument("--worker", choices=("legacy", "keras3"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    return parser.parse_args()


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


# -- (a) ours ------------------------------------------------------------------------------------


class OursVariant:
    """A decoder of ours in its own graph and session, started from the shared initial weights.

    make_decoder() builds it (default FastDecoder, what training uses); xla turns on the session's XLA
    auto-clustering; threads = (intra, inter) or None for make_session's choice.
    """

    def __init__(self, weights, batches, make_decoder=None, xla=False, threads=None):
        import tensorflow as tf

        from capstone.fast import FastDecoder
        from capstone.support.tf_session import session_config

        v1 = tf.compat.v1
        make_decoder = make_decoder or (lambda: FastDecoder(VOCAB_SIZE, PAD_IDX, model_config()))
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.decoder = make_decoder()
            self.train_op = v1.train.AdamOptimizer(LEARNING_RATE).minimize(self.decoder.loss)
            init = v1.global_variables_initializer()
            self.variables = {v.name[len("decoder/"):-2]: v for v in v1.global_variables(scope="decoder")}
        config = session_config(*(threads or ()))
        if xla:
            config.graph_options.optimizer_options.global_jit_level = v1.OptimizerOptions.ON_1
        self.session = v1.Session(graph=self.graph, config=config)
        self.session.run(init)
        if weights is not None:
            with self.graph.as_default():
                for name, variable in self.variables.items():
                    variable.load(weights[name], self.session)
        self.feeds = [{self.decoder.img_embeds: e, self.decoder.sentences: s} for e, s in batches]
        self.timer = Timer(lambda i: self.session.run(self.train_op, self.feeds[i % len(self.feeds)]))

    def weights(self):
        return dict(zip(self.variables, self.session.run(list(self.variables.values()))))

    def losses(self, steps):
        """Loss of each of ``steps`` training steps (the loss before that step's update)."""
        return [float(self.session.run([self.decoder.loss, self.train_op], self.feeds[i % len(self.feeds)])[0])
                for i in range(steps)]


def staged_decoders():
    """Decoders that add the speed-ups of FastDecoder one at a time (for --levers).

    Returns {label: function building that decoder}. The first two stages are how the fast graph
    used to work: inputs projected outside dynamic_rnn's loop, then logits gathered at non-PAD positions.
    """
    import tensorflow as tf

    from capstone.decoder import Decoder
    from capstone.fast import FastDecoder
    from capstone.fast.ops import pack_by_length
    from capstone.layers import LSTMState

    v1 = tf.compat.v1

    class ProjectedInputLSTM:
        """The same cell for inputs already multiplied by ``input_kernel`` (see ``LSTMCell.project_inputs``).

        Lets dynamic_rnn run the recurrence over [batch, time, 4 * units] precomputed gate inputs,
        so the per-step work is only the h @ recurrent_kernel matmul.
        """

        def __init__(self, cell):
            self.cell = cell

        @property
        def state_size(self):
            return self.cell.state_size

        @property
        def output_size(self):
            return self.cell.output_size

        def zero_state(self, batch_size, dtype=tf.float32):
            return self.cell.zero_state(batch_size, dtype)

        def __call__(self, projected, state, scope=None):
            return self.cell.step_from_projected(projected, state)

    class ProjectedInputs(Decoder):
        """dynamic_rnn over x @ input_kernel computed for all steps at once (the course graph otherwise)."""
        gather_logits = False

        def build_rnn(self):
            self.hidden_states, _ = v1.nn.dynamic_rnn(
                ProjectedInputLSTM(self.lstm), self.lstm.project_inputs(self.word_embeds),
                initial_state=LSTMState(self.c0, self.h0), scope="rnn")
            self.flat_hidden_states = tf.reshape(self.hidden_states, [-1, self.model_config.lstm_units])

        def build_logits(self):
            self.flat_ground_truth = tf.reshape(self.sentences[:, 1:], [-1])
            self.flat_loss_mask = tf.cast(tf.not_equal(self.flat_ground_truth, self.pad_idx), tf.float32)
            hidden = self.flat_hidden_states
            if self.gather_logits:
                real = tf.reshape(tf.where(self.flat_loss_mask > 0), [-1])
                hidden = tf.gather(hidden, real)
                self.flat_ground_truth = tf.gather(self.flat_ground_truth, real)
                self.flat_loss_mask = tf.gather(self.flat_loss_mask, real)
            self.flat_token_logits = self.token_logits(self.token_logits_bottleneck(hidden))

    class GatheredLogits(ProjectedInputs):
        gather_logits = True

    class PackedLSTM(FastDecoder):
        """FastDecoder with the course's embedding lookup and TensorFlow's cross-entropy."""

        def build_packing(self):
            targets = self.sentences[:, 1:]
            self.packing = pack_by_length(tf.not_equal(targets, self.pad_idx))
            word_embeds = self.dropout(self.layers.word_embed(self.sentences[:, :-1]))
            self.packed_words = tf.gather_nd(word_embeds, self.packing.positions)

        def build_loss(self):
            ground_truth = tf.gather_nd(self.sentences[:, 1:], self.packing.positions)
            real = tf.reshape(tf.where(tf.not_equal(ground_truth, self.pad_idx)), [-1])
            hidden = tf.gather(self.packed_hidden_states, real)
            logits = self.layers.token_logits(self.layers.token_logits_bottleneck(hidden))
            xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.gather(ground_truth, real), logits=logits)
            self.loss = tf.reduce_sum(xent) / tf.maximum(tf.cast(tf.size(xent), tf.float32), 1.0)

    class HandWrittenCrossEntropy(PackedLSTM):
        build_loss = FastDecoder.build_loss

    def make(cls):
        return lambda: cls(VOCAB_SIZE, PAD_IDX, model_config())

    return {
        "  1. + inputs projected outside the loop": make(ProjectedInputs),
        "  2. + logits only at non-PAD positions": make(GatheredLogits),
        "  3. + packed LSTM, hand-written backward": make(PackedLSTM),
        "  4. + logits & cross-entropy gradient by hand": make(HandWrittenCrossEntropy),
        "  5. + dense embedding gradient (= FastDecoder)": make(FastDecoder),
    }


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


def keras3_worker(data):
    """A Keras 3 functional model of the same decoder, trained with train_on_batch. Runs in its own process."""
    import keras
    import tensorflow as tf

    from capstone.support.tf_session import session_config

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
    model = keras.Model([img_embeds, words], logits(logits_bottleneck(hidden_states)))
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
    losses, timer = (legacy_worker if kind == "legacy" else keras3_worker)(data)
    timer.run(data["warmup"])
    print(json.dumps({"losses": losses}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        print(json.dumps(timer.run(int(line))), flush=True)


class Worker:
    """A peer in a subprocess, driven line by line (so its rounds interleave with ours)."""

    def __init__(self, kind, data_path, env=None):
        self.log = tempfile.TemporaryFile("w+")  # its TensorFlow chatter, shown only if it fails
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, "--data", data_path], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log, text=True, env={**os.environ, **(env or {})})
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


# -- the comparison ---------------------------------------------------------------------------------


def main():
    args = parse_args()
    if args.worker:
        return serve_worker(args.worker, args.data)
    load_before = os.getloadavg()[0]
    batches = make_batches(args.batches)
    real = np.mean([(s[:, 1:] != PAD_IDX).mean() for _, s in batches])
    print(f"load average before: {load_before:.2f} on {os.cpu_count()} CPUs; batch {BATCH_SIZE}, max_len {MAX_LEN}, "
          f"vocab {VOCAB_SIZE}, {100 * real:.0f}% of target positions are words")

    ours = OursVariant(None, batches)
    weights = ours.weights()  # the shared initial weights
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "data.npy")
        np.save(data_path, {"weights": weights, "batches": batches, "check_steps": args.check_steps,
                            "warmup": args.warmup}, allow_pickle=True)
        peers = {"(b) course graph: legacy Keras + LSTMCell": Worker("legacy", data_path, {"TF_USE_LEGACY_KERAS": "1"}),
                 "(c) Keras 3 LSTM + train_on_batch": Worker("keras3", data_path)}
        try:
            for peer in peers.values():
                peer.losses()  # wait for the peers to build before our timing starts
            from capstone.decoder import Decoder
            course_graph = OursVariant(weights, batches, lambda: Decoder(VOCAB_SIZE, PAD_IDX, model_config()))
            variants = {"(a) ours: FastDecoder": ours, "(a) ours: course Decoder": course_graph}
            if args.levers:
                variants.update(lever_variants(weights, batches))
            # every variant starts from the shared initial weights: the same losses, step by step
            losses = {name: variant.losses(args.check_steps) for name, variant in variants.items()}
            losses.update({name: peer.losses() for name, peer in peers.items()})
            for variant in variants.values():
                variant.timer.run(args.warmup)
            rounds = {name: [] for name in [*variants, *peers]}
            for _ in range(args.rounds):
                for name, variant in variants.items():
                    rounds[name].append(variant.timer.run(args.steps))
                for name, peer in peers.items():
                    rounds[name].append(peer.run(args.steps))
            report(rounds, losses, list(peers), load_before)
        finally:
            for peer in peers.values():
                peer.close()


def lever_variants(weights, batches):
    """The speed-ups one at a time, then the threading and XLA choices on the full fast decoder."""
    variants = {label: OursVariant(weights, batches, make) for label, make in staged_decoders().items()}
    variants.update({
        "  fast, XLA auto-clustering (ON_1)": OursVariant(weights, batches, xla=True),
        "  fast, intra 2 / inter 1 threads": OursVariant(weights, batches, threads=(2, 1)),
        "  fast, intra 1 / inter 1 threads": OursVariant(weights, batches, threads=(1, 1)),
        "  fast, intra 2 / inter 2 threads": OursVariant(weights, batches, threads=(2, 2)),
    })
    return variants


def report(rounds, losses, peers, load_before):
    """The table, the loss agreement, and the ratio line."""
    print(f"{'':52s} {'steps/s':>8s} {'(median)':>9s} {'CPU s/step':>11s}")
    speed = {}
    for name, timings in rounds.items():
        per_round = [t["steps"] / t["seconds"] for t in timings]
        speed[name] = max(per_round)
        cpu = min(t["cpu"] / t["steps"] for t in timings)
        print(f"{name:52s} {speed[name]:8.2f} {np.median(per_round):9.2f} {cpu:11.3f}")
    ours = "(a) ours: FastDecoder"
    print(f"losses of ours, {len(losses[ours])} steps from the shared weights: "
          f"{' '.join(f'{x:.5f}' for x in losses[ours])}")
    for name, values in losses.items():
        if name != ours:
            print(f"  max |loss - ours| {name.strip():48s} {np.max(np.abs(np.subtract(values, losses[ours]))):.1e}")
    fastest_peer = max(speed[name] for name in peers)
    print(f"load average after: {os.getloadavg()[0]:.2f} (before {load_before:.2f})")
    print(f"ratio: {speed[ours] / fastest_peer:.2f}")


if __name__ == "__main__":
    main()
