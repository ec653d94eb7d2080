"""The oracles the in-graph decoders are checked against: plain Python loops, one word at a time.

``beam_search``: length-normalised beam search over any one-step model; knows nothing about TensorFlow.

``step(words [k], state) -> (probs [k, vocab], new_state)`` is all it needs, where ``state`` is
a tuple of arrays whose first dimension is k (the live beams). ``FinalModel.one_step`` is such
a function; so is a tiny numpy table in the tests.
"""

import numpy as np

from capstone.config import check_beam_size


def repeats_an_ngram(tokens, word, n):
    """Would ``word`` after ``tokens`` make an n-gram (n words in a row) that the caption already has?
    (Only a word already in the caption can.)"""
    if n <= 0 or len(tokens) < n:
        return False
    candidate = tuple(tokens[len(tokens) - n + 1:]) + (word,)
    return any(tuple(tokens[i:i + n]) == candidate for i in range(len(tokens) - n + 1))


def beam_search(step, init_state, start_idx, end_idx, beam_size=3, max_len=20, length_alpha=1.0, banned=(),
                no_repeat_ngram=0):
    """The ``beam_size`` best captions as [(tokens without START/END, score)], best first.

    score = sum(log p) / len ** length_alpha, len counting END; alpha=1 is the mean log
    probability per token, so long captions are not punished just for being long.
    no_repeat_ngram: a word that would repeat an n-gram of its beam is never chosen (0: no such rule).
    """
    check_beam_size(beam_size)
    beams = [([], 0.0)]                     # (tokens so far, sum of log probs), all still open
    state = tuple(np.asarray(s) for s in init_state)  # [1, ...] for the one start beam
    finished = []
    for length in range(1, max_len + 1):
        words = np.array([tokens[-1] if tokens else start_idx for tokens, _ in beams], dtype=np.int32)
        probs, state = step(words, state)
        log_probs = np.log(np.maximum(np.asarray(probs, dtype=np.float64), 1e-30))
        log_probs[:, list(banned)] = -np.inf
        for row, (tokens, _) in enumerate(beams):
            log_probs[row, [w for w in set(tokens) if repeats_an_ngram(tokens, w, no_repeat_ngram)]] = -np.inf
        totals = np.array([score for _, score in beams])[:, None] + log_probs   # [beams, vocab]
        # Best candidates over all beams; 2 * beam_size leaves room for some that end now.
        flat = np.argsort(-totals, axis=None)[: 2 * beam_size]
        next_beams, keep_rows = [], []
        for index in flat:
            row, word = divmod(int(index), totals.shape[1])
            if not np.isfinite(totals[row, word]):
                continue
            tokens = beams[row][0] + [word]
            if word == end_idx:
                finished.append((tokens[:-1], totals[row, word] / length ** length_alpha))
            elif len(next_beams) < beam_size:
                next_beams.append((tokens, totals[row, word]))
                keep_rows.append(row)
        # Stop when the best open beam cannot beat the k-th finished one any more (log probs only fall).
        if len(finished) >= beam_size:
            kth = sorted((s for _, s in finished), reverse=True)[beam_size - 1]
            best_open = max((s for _, s in next_beams), default=-np.inf) / (max_len + 1) ** length_alpha
            if best_open <= kth:
                break
        if not next_beams:
            break
        beams = next_beams
        state = tuple(s[keep_rows] for s in state)
    if len(finished) < beam_size:  # captions cut at max_len still count, scored as if END came next
        finished += [(tokens, score / (len(tokens) + 1) ** length_alpha) for tokens, score in beams]
    finished.sort(key=lambda pair: -pair[1])
    return [(tokens, float(score)) for tokens, score in finished[:beam_size]]


def greedy_tokens_stepwise(model, embeddings, max_len=20, no_repeat_ngram=0):
    """Greedy token ids for a batch, one ``FinalModel.step`` (Session.run of one_step) per word:
    what the in-graph greedy decoder must equal."""
    state = model.initial_state(embeddings=embeddings)
    batch = len(state[0])
    words = np.full(batch, model.vocab["#START#"], dtype=np.int32)
    tokens, done = [[] for _ in range(batch)], np.zeros(batch, dtype=bool)
    image = {"embeddings": embeddings} if model.attends else {}  # attention looks at the image at every word
    for _ in range(max_len):
        probs, state = model.step(words, state, **image)
        probs = probs.astype(np.float64)
        probs[:, model.banned_tokens] = 0.0
        for row in range(batch):
            probs[row, [w for w in set(tokens[row]) if repeats_an_ngram(tokens[row], w, no_repeat_ngram)]] = -1.0
        words = probs.argmax(axis=1).astype(np.int32)
        for row in np.flatnonzero(~done):
            tokens[row].append(int(words[row]))
        done |= words == model.vocab["#END#"]
        if done.all():
            break
    return tokens


def beam_search_tokens_stepwise(model, embeddings, beam_size=3, max_len=20, length_alpha=1.0, no_repeat_ngram=0):
    """``FinalModel.beam_search_tokens`` with the numpy ``beam_search``: one Session.run per word per image."""
    c, h = model.initial_state(embeddings=embeddings)

    def step_of(row):
        if not model.attends:
            return model.step
        return lambda words, state: model.step(words, state, embeddings=np.repeat(embeddings[row:row + 1],
                                                                                  len(words), axis=0))

    return [beam_search(step_of(row), (c[row:row + 1], h[row:row + 1]), model.vocab["#START#"], model.vocab["#END#"],
                        beam_size=beam_size, max_len=max_len, length_alpha=length_alpha, banned=model.banned_tokens,
                        no_repeat_ngram=no_repeat_ngram)
            for row in range(len(c))]
