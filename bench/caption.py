"""How fast are captions generated? Our in-graph decoding against the loops people write.

One decoder of the course's sizes (2048-d embeddings, COCO-sized vocabulary of 8,769 tokens,
random weights: every method does the same arithmetic, so trained weights would change nothing
but the caption lengths) captions the same 200 embeddings, greedily, up to 20 words:

  (a) course loop:   one Session.run of one_step per word per image (the course's generate_caption)
  (b) Keras predict: a Keras 3 one-step model with the same weights, model.predict per word per
                     image, as tutorials do; (b2) the same with all images in one predict per word
  (c) ours:          FinalModel.captions, the whole batch in one Session.run (capstone.fast.decoding)

Also shown (not peers): our Python loop over the whole batch (one Session.run per word), and beam
search (k=3) in the graph against tests/decoding_oracle.py one image at a time. Batched methods are
timed ``--repeats`` times (the best counts) after a warm-up; the per-image loops run once, the
Keras one on ``--peer-images`` and the numpy beam search on ``--beam-images`` images only (their
cost per image does not depend on how many there are, and they are slow).
The last line is ``ratio: X.XX``, ours / the fastest peer, in images per second.
Target on 2 CPU cores: (c) >= 10 x (a).

    python bench/caption.py
    python bench/caption.py --images 100 --repeats 1
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
sys.path.insert(0, str(REPO / "tests"))  # synthetic.untrained_run, the decoding oracles

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from capstone.captions import END, START  # noqa: E402
from capstone.config import ModelConfig  # noqa: E402
from capstone.decoder import SCOPE  # noqa: E402
from capstone.final_model import FinalModel  # noqa: E402
from decoding_oracle import beam_search_tokens_stepwise, greedy_tokens_stepwise  # noqa: E402
from synthetic import untrained_run  # noqa: E402

v1 = tf.compat.v1
VOCAB_SIZE = 8769  # the course's COCO vocabulary (min_count 5)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--peer-images", type=int, default=8, help="images for the per-image Keras predict peer")
    parser.add_argument("--beam-images", type=int, default=40, help="images for the per-image numpy beam search")
    parser.add_argument("--max-len", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each; the best counts")
    return parser.parse_args()


def decoder_weights(model):
    """{variable name without 'decoder/' and ':0': value} of a FinalModel."""
    with model.graph.as_default():
        variables = v1.global_variables(scope=SCOPE)
    values = model.session.run(variables)
    return {v.name[len(SCOPE) + 1:-2]: value for v, value in zip(variables, values)}


def keras_step_model(weights, config):
    """A Keras 3 model (word [N], c, h) -> (probs [N, vocab], c', h') with our weights.

    Keras' LSTMCell orders its gates i, f, c, o and has no forget bias at run time; ours are
    i, j, f, o with +1 on f. Reordering the columns and adding 1 to the f bias gives the same maths.
    """
    import keras

    units = config.lstm_units
    word = keras.Input((), dtype="int32")
    c, h = keras.Input((units,)), keras.Input((units,))
    embed = keras.layers.Embedding(VOCAB_SIZE, config.word_embed_size)
    cell = keras.layers.LSTMCell(units)
    bottleneck = keras.layers.Dense(config.logit_bottleneck, activation="elu")
    logits = keras.layers.Dense(VOCAB_SIZE)
    new_h, (_, new_c) = cell(embed(word), [h, c])
    probs = keras.layers.Softmax()(logits(bottleneck(new_h)))
    model = keras.Model([word, c, h], [probs, new_c, new_h])

    def keras_gates(matrix):
        i, j, f, o = np.split(matrix, 4, axis=-1)
        return np.concatenate([i, f, j, o], axis=-1)

    bias = weights["lstm/bias"].copy()
    bias[2 * units:3 * units] += 1.0  # our forget bias, folded into Keras' f bias
    embed.set_weights([weights["word_embed/embeddings"]])
    cell.set_weights([keras_gates(weights["lstm/input_kernel"]), keras_gates(weights["lstm/recurrent_kernel"]),
                      keras_gates(bias)])
    bottleneck.set_weights([weights["token_logits_bottleneck/kernel"], weights["token_logits_bottleneck/bias"]])
    logits.set_weights([weights["token_logits/kernel"], weights["token_logits/bias"]])
    return model


def keras_greedy(step_model, init_c, init_h, start, end, banned, max_len):
    """Greedy tokens for a batch with one ``predict`` per word (batch 1: the tutorial loop)."""
    words = np.full(len(init_c), start, dtype=np.int32)
    c, h = init_c, init_h
    tokens, done = [[] for _ in words], np.zeros(len(words), dtype=bool)
    for _ in range(max_len):
        probs, c, h = step_model.predict([words, c, h], verbose=0, batch_size=len(words))
        probs[:, banned] = 0.0
        words = probs.argmax(axis=1).astype(np.int32)
        for row in np.flatnonzero(~done):
            tokens[row].append(int(words[row]))
        done |= words == end
        if done.all():
            break
    return tokens


def best_time(function, rows, repeats):
    """(images per second of the fastest of ``repeats`` calls on ``rows``, its result); a warm-up
    call on two rows first (graph functions are traced and memory pools sized on first use)."""
    function(rows[:2])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function(rows)
        times.append(time.perf_counter() - started)
    return len(rows) / min(times), result


def main():
    args = parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; tf {tf.__version__}")
    config = ModelConfig()
    embeds = np.random.default_rng(0).random((args.images, config.img_embed_size), dtype=np.float32)
    peer_embeds, beam_embeds = embeds[:args.peer_images], embeds[:args.beam_images]
    with tempfile.TemporaryDirectory() as tmp:
        model = FinalModel.load(untrained_run(tmp, VOCAB_SIZE, config, seed=0))
    start, end, banned = model.vocab[START], model.vocab[END], model.banned_tokens
    step_model = keras_step_model(decoder_weights(model), config)
    max_len = args.max_len

    def course_loop(rows):
        return [greedy_tokens_stepwise(model, rows[i:i + 1], max_len=max_len)[0] for i in range(len(rows))]

    def keras_per_image(rows):
        tokens = []
        for i in range(len(rows)):
            c, h = model.initial_state(embeddings=rows[i:i + 1])  # the image part is not what differs
            tokens += keras_greedy(step_model, c, h, start, end, banned, max_len)
        return tokens

    def keras_batched(rows):
        c, h = model.initial_state(embeddings=rows)
        return keras_greedy(step_model, c, h, start, end, banned, max_len)

    # (name, function of the embeddings, embeddings, is it a peer); per-image loops run once:
    # their own length averages out the noise, and they are slow.
    cases = [
        ("(a) course loop, Session.run per word per image", course_loop, embeds, True),
        ("(b) Keras 3 predict per word per image", keras_per_image, peer_embeds, True),
        ("(b2) Keras 3 predict per word, whole batch", keras_batched, embeds, True),
        ("ours: Python loop, Session.run per word for the batch",
         lambda rows: greedy_tokens_stepwise(model, rows, max_len=max_len), embeds, False),
        ("(c) ours: in-graph greedy, one Session.run",
         lambda rows: model.sample_tokens(embeddings=rows, max_len=max_len), embeds, False),
        ("beam k=3: tests/decoding_oracle.py per image", lambda rows: beam_search_tokens_stepwise(
            model, rows, beam_size=3, max_len=max_len), beam_embeds, False),
        ("beam k=3: ours in-graph, one Session.run", lambda rows: model.beam_search_tokens(
            embeddings=rows, beam_size=3, max_len=max_len), embeds, False),
    ]
    timings, results = {}, {}
    for name, function, rows, _ in cases:
        repeats = 1 if "per image" in name else args.repeats
        timings[name], results[name] = best_time(function, rows, repeats)
        print(f"{name:58s} {timings[name]:9.1f} images/s  ({len(rows)} images)", flush=True)

    greedy = results["(c) ours: in-graph greedy, one Session.run"]
    agree = {name: np.mean([a == b for a, b in zip(greedy, results[name])]) for name, _, _, peer in cases
             if peer or "Python loop" in name}
    beam_ours = [[t for t, _ in f] for f in results["beam k=3: ours in-graph, one Session.run"][:len(beam_embeds)]]
    beam_ref = [[t for t, _ in f] for f in results["beam k=3: tests/decoding_oracle.py per image"]]
    print("same greedy tokens as (c): " + ", ".join(f"{name.split(' ')[0]} {100 * v:.0f}%"
                                                      for name, v in agree.items()))
    print(f"same beams as tests/decoding_oracle.py: {100 * np.mean([a == b for a, b in zip(beam_ours, beam_ref)]):.0f}%; "
          f"mean greedy caption length {np.mean([len(t) for t in greedy]):.1f} tokens")
    ours = timings["(c) ours: in-graph greedy, one Session.run"]
    fastest_peer = max(timings[name] for name, _, _, peer in cases if peer)
    print(f"in-graph vs per-image loop (a): {ours / timings[cases[0][0]]:.1f} x (target >= 10)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"ratio: {ours / fastest_peer:.2f}")


if __name__ == "__main__":
    main()
