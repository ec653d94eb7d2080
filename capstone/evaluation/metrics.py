"""Caption metrics: BLEU-1..4, METEOR, ROUGE-L and CIDEr, as the COCO caption evaluation computes them.

    references = {"img1.jpg": ["a dog runs on grass", "a brown dog running"], ...}
    candidates = {"img1.jpg": "a dog running on the grass", ...}
    score_captions(references, candidates)
    -> OrderedDict(Bleu_1=0.71, Bleu_2=..., Bleu_3=..., Bleu_4=0.25, METEOR=0.23, ROUGE_L=0.52, CIDEr=0.81)

The numbers come from ``pycocoevalcap`` (the official COCO code). Two of its parts are Java
programs: the PTB tokenizer and METEOR. Without ``java`` on the PATH we tokenise with
``capstone.captions.split_sentence`` instead, skip METEOR (its value is ``None``) and still
compute BLEU, ROUGE-L and CIDEr, which are pure Python.

Scores are corpus scores over all images (BLEU counts n-grams over the whole corpus; the
others average per-image scores). CIDEr weights n-grams by how rare they are across the
images, so it means little for a handful of images (for one image it is always 0).
"""

import collections
import contextlib
import re
import shutil
import threading
import warnings

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from capstone.captions import split_sentence
from capstone.errors import CapstoneError
from capstone.support.quiet import filtered_stderr

# pycocoevalcap's names for the metrics, in the order the COCO leaderboard prints them.
METRIC_NAMES = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")

# METEOR's java process loads a paraphrase table first (about 10 s), then scores quickly.
# If it has not answered after this long it is killed and METEOR is reported as None.
METEOR_TIMEOUT_S = 120.0
METEOR_TIMEOUT_PER_IMAGE_S = 0.01


def _clean(text):
    """One line of text: every run of whitespace (newlines too) becomes one space.

    The Java tools read one caption per line, and METEOR uses "|||" as its field
    separator, so neither a line break nor "|" may survive inside a caption.
    """
    return " ".join(text.replace("|", " ").split())


def _check_inputs(references, candidates):
    """Validate the two mappings -> ({id: [clean ref, ...]}, {id: clean candidate})."""
    if not isinstance(references, dict) or not isinstance(candidates, dict):
        raise CapstoneError(
            "score_captions: references must be {image id: [caption, ...]} and candidates "
            "{image id: caption}, both dicts"
        )
    missing_candidates = [key for key in references if key not in candidates]
    missing_references = [key for key in candidates if key not in references]
    if missing_candidates or missing_references:
        raise CapstoneError(
            "score_captions: candidates and references must have the same image ids; "
            f"no candidate for {len(missing_candidates)} id(s) {missing_candidates[:5]}, "
            f"no references for {len(missing_references)} id(s) {missing_references[:5]}"
        )
    if not references:
        raise CapstoneError("score_captions: no images to score (references and candidates are empty)")
    clean_refs, clean_cands = collections.OrderedDict(), collections.OrderedDict()
    for key, refs in references.items():
        if not isinstance(refs, (list, tuple)) or not all(isinstance(ref, str) for ref in refs):
            raise CapstoneError(f"references[{key!r}]: expected a list of caption strings, got {refs!r:.80}")
        clean_refs[key] = [_clean(ref) for ref in refs if ref.strip()]
        if not clean_refs[key]:
            raise CapstoneError(f"references[{key!r}]: has no non-empty reference caption")
        candidate = candidates[key]
        if not isinstance(candidate, str):
            raise CapstoneError(
                f"candidates[{key!r}]: expected one caption string, got {type(candidate).__name__}"
            )
        # An empty candidate is legal (a model can emit END at once); every metric scores it 0.
        clean_cands[key] = _clean(candidate)
    return clean_refs, clean_cands


_PTB_PROGRESS = re.compile(r"^PTBTokenizer tokenized \d+ tokens at ")


def _tokenize_java(refs, cands):
    """PTB-tokenise references and candidates in one java run -> (gts, res) for pycocoevalcap."""
    # One call for both sets: every java start costs a fraction of a second.
    sentences = collections.OrderedDict()
    for key, captions in refs.items():
        sentences[("ref", key)] = [{"caption": caption} for caption in captions]
    for key, caption in cands.items():
        sentences[("cand", key)] = [{"caption": caption}]
    try:
        with filtered_stderr(also_drop=_PTB_PROGRESS):  # java's "PTBTokenizer tokenized 3792 tokens at ..."
            tokenized = PTBTokenizer().tokenize(sentences)
    except OSError as error:  # it writes a temporary file next to its jar, in site-packages
        raise CapstoneError(
            f"score_captions: the PTB tokenizer could not run ({error}); pass use_java=False "
            f"to tokenise in Python"
        ) from None
    # The tokenizer pairs output lines with inputs by position; a count mismatch would
    # silently shift captions between images, so check every image.
    for name, captions in sentences.items():
        if len(tokenized.get(name, ())) != len(captions):
            raise CapstoneError(
                f"score_captions: the PTB tokenizer returned {len(tokenized.get(name, ()))} line(s) "
                f"for {name[0]} {name[1]!r}, expected {len(captions)}"
            )
    gts = {key: tokenized[("ref", key)] for key in refs}
    res = {key: tokenized[("cand", key)] for key in cands}
    return gts, res


def _tokenize_python(refs, cands):
    """Tokenise with split_sentence (lower case, punctuation dropped) -> (gts, res)."""
    gts = {key: [" ".join(split_sentence(ref)) for ref in captions] for key, captions in refs.items()}
    res = {key: [" ".join(split_sentence(caption))] for key, caption in cands.items()}
    return gts, res


def _drop_empty_references(gts):
    """References that tokenise to nothing (e.g. "...") are dropped; an image needs one left."""
    kept = {}
    for key, captions in gts.items():
        kept[key] = [caption for caption in captions if caption.strip()]
        if not kept[key]:
            raise CapstoneError(f"references[{key!r}]: every reference caption is empty after tokenising")
    return kept


class _ClosableMeteor(Meteor):
    """pycocoevalcap's METEOR client with a ``close()`` that always ends the java process.

    The original only stops java in ``__del__``, which first takes a lock that stays held
    if scoring failed half-way, so garbage collection could block forever. Here ``close``
    takes no lock, is safe to call twice, and reaps the process (no zombie is left).
    """

    def close(self):
        process = self.meteor_p
        with contextlib.suppress(OSError):
            process.stdin.close()  # java exits on end of input
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            with contextlib.suppress(OSError):
                stream.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()


def _meteor_score(meteor, gts, res, timeout_s):
    """Corpus METEOR from a started ``_ClosableMeteor``, or None (with a warning) on failure.

    The java process is always closed on return. A watchdog kills java after ``timeout_s``:
    the pending read then sees end-of-file and fails, instead of waiting forever for an
    answer that will never come.
    """
    watchdog = threading.Timer(timeout_s, meteor.meteor_p.kill)
    watchdog.daemon = True
    watchdog.start()
    try:
        score, _ = meteor.compute_score(gts, res)
        return float(score)
    except (ValueError, OSError) as error:
        timed_out = not watchdog.is_alive()  # the timer thread ends once it has fired
        reason = f"no answer within {timeout_s:g} s" if timed_out else f"{type(error).__name__}: {error}"
        warnings.warn(f"METEOR failed ({reason}); reporting METEOR = None", RuntimeWarning, stacklevel=3)
        return None
    finally:
        watchdog.cancel()
        meteor.close()


def score_captions(references, candidates, use_java=None, meteor=True):
    """COCO caption metrics of ``candidates`` against ``references``.

    references: {image id: [reference caption, ...]}; candidates: {image id: caption}. Both
        must have the same image ids. An empty candidate is allowed and scores 0.
    use_java: None -> use Java when ``java`` is on the PATH; False -> never (no METEOR);
        True -> require it.
    meteor: False skips METEOR even with Java (its java start costs about 10 s), e.g. for a
        quick check after every epoch; tokenising still uses the PTB tokenizer.
    Returns an OrderedDict with the keys of ``METRIC_NAMES`` and float values (METEOR is
    None when skipped).
    """
    refs, cands = _check_inputs(references, candidates)
    java_found = shutil.which("java") is not None
    if use_java and not java_found:
        raise CapstoneError("score_captions: use_java=True but no 'java' program is on the PATH")
    if use_java is None:
        use_java = java_found
    if not use_java:
        warnings.warn(
            "java not found: METEOR skipped, tokenising with split_sentence"
            if not java_found else "use_java=False: METEOR skipped, tokenising with split_sentence",
            RuntimeWarning, stacklevel=2,
        )

    # Start METEOR's java first: it loads its paraphrase table while we tokenise and
    # compute the pure-Python metrics.
    meteor_client = _ClosableMeteor() if use_java and meteor else None
    try:
        gts, res = _tokenize_java(refs, cands) if use_java else _tokenize_python(refs, cands)
        gts = _drop_empty_references(gts)
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        rouge, _ = Rouge().compute_score(gts, res)
        cider, _ = Cider().compute_score(gts, res)
        meteor_value = None
        if meteor_client is not None:
            timeout_s = METEOR_TIMEOUT_S + METEOR_TIMEOUT_PER_IMAGE_S * len(gts)
            meteor_value = _meteor_score(meteor_client, gts, res, timeout_s)
    finally:
        if meteor_client is not None:
            meteor_client.close()

    scores = collections.OrderedDict(
        (f"Bleu_{n}", float(value)) for n, value in enumerate(bleu, start=1)
    )
    scores["METEOR"] = meteor_value
    scores["ROUGE_L"] = float(rouge)
    scores["CIDEr"] = float(cider)
    return scores


def format_scores(scores):
    """One line for people: "Bleu_1 0.712  Bleu_2 0.541  ...  METEOR n/a  ROUGE_L 0.523  CIDEr 0.812".

    Metrics appear in ``METRIC_NAMES`` order; a metric that was skipped (None) shows "n/a".
    """
    parts = []
    for name in METRIC_NAMES:
        if name in scores:
            value = scores[name]
            parts.append(f"{name} {'n/a' if value is None else format(value, '.3f')}")
    return "  ".join(parts)
