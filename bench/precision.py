"""float32 against bfloat16, side by side in one run: matmul peak, training, embedding, captioning.

What it prints, each in both precisions (``--precision`` of every command; capstone/support/precision.py):
  * the CPU's flags that matter (avx512*, amx*) and what ``--precision auto`` picks here;
  * the matmul peak, GFLOP/s: 2048 x 2048 x 2048, and the logits shape 1000x120 . 120x8769;
  * training steps/s: the fast trainer (``FastDecoder``, course sizes, vocabulary 8,769, batch 64),
    with bfloat16 by explicit casts and, to compare, float32 code under oneDNN's automatic rewrite;
    and the attention decoder (7 x 7 x 1280 grids, batch 64);
  * embedding images/s, batches of 32 Flickr8k photos: EfficientNet-Lite0 (ImageNet weights) and InceptionV3 (random
    weights: the same arithmetic), bfloat16 by oneDNN's rewrite (a frozen graph cannot be cast by hand),
    with the cosine similarity of the embeddings to float32's;
  * greedy captions images/s, in-graph, against the course's loop (one Session.run per word per image),
    with the share of identical captions (random weights: the harshest case for agreement).
Each path's speed is also given as a share of that precision's 2048^3 peak (FLOPs counted by hand).
Variants run in ``--rounds`` interleaved rounds, the best round counts, so load from other programs
hits all alike. Where the CPU has no native bfloat16 TensorFlow emulates it: bfloat16 is then slower,
which is why ``--precision auto`` stays float32 there.

    python bench/precision.py
    python bench/precision.py --rounds 1 --skip inception_v3
"""

import argparse
import os
import pathlib
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # synthetic.untrained_run, the course's decoding loop

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from capstone.config import ModelConfig  # noqa: E402
from capstone.support import precision  # noqa: E402
from capstone.support.tf_session import session_config  # noqa: E402

v1 = tf.compat.v1
VOCAB, PAD, START, END = 8769, 0, 2, 3
BATCH, MAX_LEN = 64, 20
PRECISIONS = ("float32", "bfloat16")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved timed rounds; the best counts")
    parser.add_argument("--steps", type=int, default=5, help="training steps per round")
    parser.add_argument("--images", type=int, default=500, help="images captioned per round (in-graph greedy)")
    parser.add_argument("--loop-images", type=int, default=10, help="images the course's loop captions (once)")
    parser.add_argument("--embed-batches", type=int, default=2, help="batches of 32 embedded per round")
    parser.add_argument("--skip", action="append", default=[],
                        help="leave out: matmul, train, attention, efficientnet_lite0, inception_v3, caption")
    return parser.parse_args()


def best_rate(runners, count, rounds):
    """{name: best count/second over ``rounds``} of callables timed in turn, after one warm-up call each."""
    for run in runners.values():
        run()
    rates = {name: 0.0 for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            started = time.perf_counter()
            run()
            rates[name] = max(rates[name], count / (time.perf_counter() - started))
    return rates


def show(title, rates, unit, flops=None, peak=None):
    """One line per variant, its speed-up over the first, and (with flops per item) its share of peak."""
    base = next(iter(rates.values()))
    for name, rate in rates.items():
        line = f"  {title + ' ' + name:58s} {rate:9.2f} {unit}  x{rate / base:5.2f}"
        if flops and peak:
            used, of = rate * flops / 1e9, peak["bfloat16" if "bfloat16" in name else "float32"]
            line += f"  {used:7.1f} GFLOP/s = {100 * used / of:3.0f} % of its peak"
        print(line, flush=True)


# -- matmul peak --------------------------------------------------------------------------------


def matmul_runner(m, k, n, dtype):
    graph = tf.Graph()
    with graph.as_default():
        rng = np.random.default_rng(0)
        a = v1.Variable(tf.cast(tf.constant(rng.random((m, k), np.float32)), dtype))
        b = v1.Variable(tf.cast(tf.constant(rng.random((k, n), np.float32)), dtype))
        product = tf.reduce_sum(tf.matmul(a, b)[:1, :1])  # fetch one number, not the matrix
        session = v1.Session(graph=graph, config=session_config())
        session.run(v1.global_variables_initializer())
    return lambda: [session.run(product.op) for _ in range(3)]


def bench_matmul(rounds):
    peaks = {}
    for m, k, n in ((2048, 2048, 2048), (1000, 120, 8769)):
        rates = best_rate({name: matmul_runner(m, k, n, getattr(tf, name)) for name in PRECISIONS}, 3, rounds)
        gflops = {name: rate * 2 * m * k * n / 1e9 for name, rate in rates.items()}
        show(f"matmul {m}x{k}.{k}x{n}", gflops, "GFLOP/s")
        peaks = peaks or gflops
    return peaks


# -- training -----------------------------------------------------------------------------------


def train_batches(n=5, seed=0, grid=False):
    """Batches of 64 captions of COCO-like lengths (bench/train_step.py's), embeddings or 7x7x1280 grids."""
    from capstone.captions import batch_captions_to_matrix

    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n):
        words = np.clip(np.round(rng.normal(10.5, 2.5, BATCH)), 5, 18).astype(int)
        captions = [[START, *rng.integers(END + 1, VOCAB, k), END] for k in words]
        shape = (BATCH, 7, 7, 1280) if grid else (BATCH, 2048)
        batches.append((rng.gamma(0.5, 0.8, shape).astype(np.float32),
                        batch_captions_to_matrix(captions, PAD, max_len=MAX_LEN).astype(np.int32)))
    return batches


def trainer(model, batches, graph_precision, rewrite=False):
    """A training step function of the decoder ``model`` describes, in its own graph and session."""
    from capstone.attention import AttentionDecoder
    from capstone.fast import FastDecoder

    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        precision.set_graph_precision(graph_precision)
        decoder = (AttentionDecoder if model.decoder == "attention" else FastDecoder)(VOCAB, PAD, model)
        train_op = v1.train.AdamOptimizer(0.001).minimize(decoder.loss)
        session = v1.Session(graph=graph, config=session_config(bfloat16_rewrite=rewrite))
        session.run(v1.global_variables_initializer())
    feeds = [{decoder.img_embeds: e, decoder.sentences: s} for e, s in batches]
    return lambda steps: [session.run(train_op, feeds[i % len(feeds)]) for i in range(steps)]


def training_flops(model, batches, attention=False):
    """FLOPs of one training step (forward + both backward products of every matmul), on average."""
    u, e, b, lo, f = model.lstm_units, model.word_embed_size, model.img_embed_bottleneck, model.logit_bottleneck, 3
    n = np.mean([np.sum(s[:, 1:] != PAD) for _, s in batches])        # real targets = LSTM steps run
    per_word = 2 * ((e + (b if attention else 0)) * 4 * u + u * 4 * u + (u + (b if attention else 0)) * lo
                    + lo * VOCAB)
    if attention:  # every word: the hidden projection and scores over 49 locations of 256
        per_word += 2 * (u * model.attention_units + 49 * model.attention_units)
    per_image = 2 * (model.img_embed_size * b * (49 if attention else 1) + 2 * b * u)
    return f * (n * per_word + BATCH * per_image)


def bench_training(args, peak):
    model = ModelConfig()
    batches = train_batches()
    runners = {"float32": trainer(model, batches, "float32"),
               "bfloat16 (explicit casts)": trainer(model, batches, "bfloat16"),
               "float32 + oneDNN bfloat16 rewrite": trainer(model, batches, "float32", rewrite=True)}
    rates = best_rate({k: (lambda r=r: r(args.steps)) for k, r in runners.items()}, args.steps, args.rounds)
    show("train show_and_tell", rates, "steps/s", training_flops(model, batches), peak)


def bench_attention(args, peak):
    model = ModelConfig(decoder="attention", img_embed_size=1280, attention_units=256)
    batches = train_batches(n=2, grid=True)
    runners = {name: trainer(model, batches, name) for name in PRECISIONS}
    steps = max(1, args.steps // 2)
    rates = best_rate({k: (lambda r=r: r(steps)) for k, r in runners.items()}, steps, args.rounds)
    show("train attention", rates, "steps/s", training_flops(model, batches, attention=True), peak)


# -- embedding ----------------------------------------------------------------------------------

ENCODER_GFLOP = {"efficientnet_lite0": 0.8, "inception_v3": 11.4}  # 2 x multiply-adds per image (224 / 299 px)


FLICKR_IMAGES = pathlib.Path("/work/shared/data/flickr8k/images")


def photos(size, count):
    """``count`` Flickr8k photos resized to size x size (random pixels where they are absent), float32."""
    import cv2

    if not FLICKR_IMAGES.is_dir():
        return np.random.default_rng(0).uniform(0, 255, (count, size, size, 3)).astype(np.float32)
    names = sorted(FLICKR_IMAGES.iterdir())[:count]
    return np.stack([cv2.resize(cv2.cvtColor(cv2.imread(str(n)), cv2.COLOR_BGR2RGB), (size, size))
                     for n in names]).astype(np.float32)


def bench_encoder(name, args, peak):
    from capstone.encoders import frozen_encoder
    from capstone.encoders.embed import EncoderSession

    frozen = frozen_encoder(name, weights="imagenet" if name == "efficientnet_lite0" else None)
    size = frozen.image_size
    pixels = photos(size, 32)
    sessions = {name: EncoderSession(frozen, name) for name in PRECISIONS}
    embeds = {k: s(pixels) for k, s in sessions.items()}
    rates = best_rate({k: (lambda s=s: [s(pixels) for _ in range(args.embed_batches)]) for k, s in sessions.items()},
                      32 * args.embed_batches, args.rounds)
    show(f"embed {name}", {k + " (rewrite)" if k == "bfloat16" else k: v for k, v in rates.items()}, "images/s",
         ENCODER_GFLOP[name] * 1e9, peak)
    a, b = embeds["float32"], embeds["bfloat16"]
    cosine = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    print(f"  embed {name}: cosine similarity bfloat16 vs float32, min {cosine.min():.5f}, mean {cosine.mean():.5f}")


# -- captioning ---------------------------------------------------------------------------------


def bench_captions(args, peak):
    from capstone.final_model import FinalModel
    from capstone.support import run_dir as runs
    from decoding_oracle import greedy_tokens_stepwise
    from synthetic import untrained_run

    config = ModelConfig()
    embeds = np.random.default_rng(0).gamma(0.5, 0.8, (args.images, config.img_embed_size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        run = runs.load_run(untrained_run(tmp, VOCAB, config, seed=0))
        models = {name: FinalModel(run, precision=name) for name in PRECISIONS}
    tokens = {name: m.sample_tokens(embeddings=embeds, max_len=MAX_LEN) for name, m in models.items()}
    rates = best_rate({k: (lambda m=m: m.sample_tokens(embeddings=embeds, max_len=MAX_LEN))
                       for k, m in models.items()}, args.images, args.rounds)
    words = np.mean([len(t) + 1 for t in tokens["float32"]])
    show("captions in-graph greedy", rates, "images/s",
         2 * words * (config.lstm_units * 4 * config.lstm_units + config.word_embed_size * 4 * config.lstm_units
                      + config.lstm_units * config.logit_bottleneck + config.logit_bottleneck * VOCAB), peak)
    loop = embeds[:args.loop_images]
    started = time.perf_counter()
    for i in range(len(loop)):
        greedy_tokens_stepwise(models["float32"], loop[i:i + 1], max_len=MAX_LEN)
    course = len(loop) / (time.perf_counter() - started)
    print(f"  captions: the course's loop (Session.run per word per image, float32) {course:.1f} images/s; "
          f"in-graph float32 {rates['float32'] / course:.1f} x, bfloat16 {rates['bfloat16'] / course:.1f} x it")
    same = np.mean([list(a) == list(b) for a, b in zip(tokens["float32"], tokens["bfloat16"])])
    print(f"  captions: identical greedy tokens bfloat16 vs float32 {100 * same:.1f} % "
          f"(random weights, mean {words - 1:.1f} words)")


def cpu_summary():
    flags = precision.cpu_flags()
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    shown = " ".join(sorted(f for f in flags if f.startswith(("avx512", "amx")))) or "none"
    hardware = precision.bfloat16_hardware()
    print(f"CPU: {model}; {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} "
          f"usable cores; load average {os.getloadavg()[0]:.2f}; TensorFlow {tf.__version__}")
    print(f"CPU flags found: {shown}")
    print(f"native bfloat16: {hardware or 'none (TensorFlow emulates it)'}; --precision auto -> "
          f"{precision.resolve('auto')}")


def main():
    args = parse_args()
    cpu_summary()
    peak = {name: None for name in PRECISIONS}
    steps = [("matmul", None), ("train", bench_training), ("attention", bench_attention),
             ("efficientnet_lite0", lambda a, p: bench_encoder("efficientnet_lite0", a, p)),
             ("inception_v3", lambda a, p: bench_encoder("inception_v3", a, p)), ("caption", bench_captions)]
    if "matmul" not in args.skip:
        peak = bench_matmul(args.rounds)
    for name, function in steps[1:]:
        if name not in args.skip:
            function(args, peak if peak["float32"] else None)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
