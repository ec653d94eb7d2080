"""How fast does the decoder train? Ours against the course's graph and idiomatic Keras 3.

Same architecture (the course's sizes: 2048-d embeddings -> 120 -> LSTM 300, words 100-d,
logits through 120 to a COCO-sized vocabulary of 8,769 tokens), same batches (64 captions of
COCO-like lengths, max_len 20), same initial weights, Adam(0.001):

  (a) ours:    capstone.fast.FastDecoder as training uses it, in float32 and (where the hardware
               multiplies it natively, capstone/support/precision.py) in bfloat16; the course
               Decoder for reference
  (b) course:  the course notebook's graph, legacy Keras layers + tf.compat.v1 LSTMCell +
               dynamic_rnn (bench/peers.py; needs tf_keras, see bench/requirements.txt)
  (c) Keras 3: a functional model with LSTM(return_sequences=True), train_on_batch, the loss
               masked with sample weights; with bfloat16 hardware also under Keras' own
               "mixed_bfloat16" policy, so each precision of ours meets a peer in the same one

Each peer first runs ``--check-steps`` steps from the shared initial weights on the same batches;
its losses are compared with ours (the maths must agree). Then every variant is timed in
``--rounds`` interleaved rounds of ``--steps`` steps (warm-up excluded; the best round counts), so a
burst of load from other programs hits all of them alike. ``--levers`` adds variants of ours that
show what each speed-up gives. The last line is ``ratio: X.XX``: ours, in the precision
``--precision auto`` picks here, over the fastest peer in any precision, in steps per second.
Targets on 2 CPU cores: >= 1.5 in float32, >= 2.5 with bfloat16 hardware (issue #19).

    python bench/train_step.py
    python bench/train_step.py --levers --rounds 2
"""

import argparse
import os
import pathlib
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from peers import (BATCH_SIZE, LEARNING_RATE, MAX_LEN, PAD_IDX, VOCAB_SIZE, Timer, Worker,  # noqa: E402
                   make_batches, model_config)


FLOAT32_OURS, BFLOAT16_OURS = "(a) ours: FastDecoder", "(a) ours: FastDecoder, bfloat16"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds; the best counts")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before the first round")
    parser.add_argument("--check-steps", type=int, default=5, help="steps whose losses are compared across models")
    parser.add_argument("--batches", type=int, default=5, help="distinct batches, used in turn")
    parser.add_argument("--levers", action="store_true", help="also time variants of ours, one speed-up at a time")
    parser.add_argument("--precision", choices=("auto", "float32"), default="auto",
                        help="auto (default): also bfloat16 variants where the hardware has it; float32: only float32")
    return parser.parse_args()


# -- (a) ours ------------------------------------------------------------------------------------


class OursVariant:
    """A decoder of ours in its own graph and session, started from the shared initial weights.

    make_decoder() builds it (default FastDecoder, what training uses); xla turns on the session's XLA
    auto-clustering; threads = (intra, inter) or None for make_session's choice; precision: of its matmuls.
    """

    def __init__(self, weights, batches, make_decoder=None, xla=False, threads=None, precision="float32"):
        import tensorflow as tf

        from capstone.fast import FastDecoder
        from capstone.support.precision import set_graph_precision
        from capstone.support.tf_session import session_config

        v1 = tf.compat.v1
        make_decoder = make_decoder or (lambda: FastDecoder(VOCAB_SIZE, PAD_IDX, model_config()))
        self.graph = tf.Graph()
        with self.graph.as_default():
            set_graph_precision(precision)
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


# -- the comparison ---------------------------------------------------------------------------------


def main():
    from capstone.support.precision import resolve

    args = parse_args()
    bfloat16 = resolve(args.precision) == "bfloat16"
    load_before = os.getloadavg()[0]
    batches = make_batches(args.batches)
    real = np.mean([(s[:, 1:] != PAD_IDX).mean() for _, s in batches])
    print(f"load average before: {load_before:.2f} on {os.cpu_count()} CPUs; batch {BATCH_SIZE}, max_len {MAX_LEN}, "
          f"vocab {VOCAB_SIZE}, {100 * real:.0f}% of target positions are words; "
          f"bfloat16 variants: {'yes' if bfloat16 else 'no (--precision auto found no native bfloat16)'}")

    ours = OursVariant(None, batches)
    weights = ours.weights()  # the shared initial weights
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "data.npy")
        np.save(data_path, {"weights": weights, "batches": batches, "check_steps": args.check_steps,
                            "warmup": args.warmup}, allow_pickle=True)
        peers = {"(b) course graph: legacy Keras + LSTMCell": Worker("legacy", data_path),
                 "(c) Keras 3 LSTM + train_on_batch": Worker("keras3", data_path)}
        if bfloat16:
            peers["(c) Keras 3, mixed_bfloat16 policy"] = Worker("keras3_bf16", data_path)
        try:
            for peer in peers.values():
                peer.losses()  # wait for the peers to build before our timing starts
            from capstone.decoder import Decoder
            course_graph = OursVariant(weights, batches, lambda: Decoder(VOCAB_SIZE, PAD_IDX, model_config()))
            variants = {FLOAT32_OURS: ours, "(a) ours: course Decoder": course_graph}
            if bfloat16:
                variants[BFLOAT16_OURS] = OursVariant(weights, batches, precision="bfloat16")
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
            report(rounds, losses, list(peers), load_before, BFLOAT16_OURS if bfloat16 else FLOAT32_OURS)
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


def report(rounds, losses, peers, load_before, chosen):
    """The table, the loss agreement, and the ratio lines (``chosen``: the variant of ours that
    --precision auto trains with here)."""
    print(f"{'':52s} {'steps/s':>8s} {'(median)':>9s} {'CPU s/step':>11s}")
    speed = {}
    for name, timings in rounds.items():
        per_round = [t["steps"] / t["seconds"] for t in timings]
        speed[name] = max(per_round)
        cpu = min(t["cpu"] / t["steps"] for t in timings)
        print(f"{name:52s} {speed[name]:8.2f} {np.median(per_round):9.2f} {cpu:11.3f}")
    ours = FLOAT32_OURS
    print(f"losses of ours, {len(losses[ours])} steps from the shared weights: "
          f"{' '.join(f'{x:.5f}' for x in losses[ours])}")
    for name, values in losses.items():
        if name != ours:
            print(f"  max |loss - ours| {name.strip():48s} {np.max(np.abs(np.subtract(values, losses[ours]))):.1e}")
    fastest_peer = max(speed[name] for name in peers)
    float32_peer = max(speed[name] for name in peers if "bfloat16" not in name)
    print(f"load average after: {os.getloadavg()[0]:.2f} (before {load_before:.2f})")
    print(f"float32: ours / the fastest float32 peer {speed[ours] / float32_peer:.2f}")
    if chosen != ours:
        print(f"bfloat16: ours {speed[chosen]:.2f} steps/s = x{speed[chosen] / speed[ours]:.2f} ours in float32, "
              f"x{speed[chosen] / float32_peer:.2f} the fastest float32 peer")
    print(f"ratio: {speed[chosen] / fastest_peer:.2f}")


if __name__ == "__main__":
    main()
