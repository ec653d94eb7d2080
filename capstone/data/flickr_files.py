"""Flickr's own caption files: every format ends up as ``{image file name: [caption, ...]}``.

* Flickr8k's ``Flickr8k.token.txt``: one caption a line, ``image.jpg#n<TAB>caption``::

      1000268201_693b08cb0e.jpg#0<TAB>A child in a pink dress is climbing up a set of stairs .
      -> {"1000268201_693b08cb0e.jpg": ["A child in a pink dress is climbing up a set of stairs ."]}

  Its split lists ``Flickr_8k.trainImages.txt``, ``Flickr_8k.devImages.txt`` and
  ``Flickr_8k.testImages.txt`` (one file name a line) are looked for beside it: "dev" is our "val".
* Flickr30k's ``results.csv``: a header ``image_name| comment_number| comment``, then
  ``1000092795.jpg| 0| Two young guys with shaggy hair look at their hands .`` (fields split at ``|``).

Errors name the file and the line: ``Flickr8k.token.txt: line 7: ...``.
"""

import collections
import os
import warnings

from capstone.errors import CapstoneError

TOKEN_LINE = "image.jpg#n<TAB>caption"
RESULTS_HEADER = ["image_name", "comment_number", "comment"]
# Our split name -> Flickr8k's list file, found in the token file's folder.
FLICKR8K_LISTS = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt",
                  "test": "Flickr_8k.testImages.txt"}


def _lines(path):
    """(line number, line without its end) for each non-blank line of a UTF-8 text file."""
    number = 0
    try:
        with open(path, encoding="utf-8-sig") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    yield number, line.rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise CapstoneError(f"{path}: not UTF-8 text, somewhere after line {number} ({error.reason})") from None


def first_line(path):
    """The first non-blank line of a text file ('' if none)."""
    return next((line for _, line in _lines(path)), "")


def looks_like_token_file(path):
    """A ``.token.txt`` name, or a first line ``image.jpg#n<TAB>caption``."""
    if os.path.basename(path).lower().endswith(".token.txt"):
        return True
    image, tab, _ = first_line(path).partition("\t")
    return bool(tab) and image.rpartition("#")[2].strip().isdigit()


def looks_like_results_csv(path):
    """A first line ``image_name| comment_number| comment``."""
    return [field.strip().lower() for field in first_line(path).split("|")] == RESULTS_HEADER


def load_flickr8k_tokens(path):
    """Captions from Flickr8k's ``Flickr8k.token.txt`` (also ``Flickr8k.lemma.token.txt``).

    ``x.jpg#0<TAB> A dog .`` -> ``{"x.jpg": ["A dog ."]}``; blank lines are skipped, spaces trimmed.
    """
    fn_to_captions = collections.OrderedDict()
    for number, line in _lines(path):
        key, tab, caption = line.partition("\t")
        if not tab:
            raise CapstoneError(f"{path}: line {number}: no tab; expected '{TOKEN_LINE}', got {line[:80]!r}")
        fn, hash_sign, n = key.strip().rpartition("#")
        if not hash_sign or not n.isdigit() or not fn:
            raise CapstoneError(f"{path}: line {number}: '{key.strip()}' does not end in '#n' "
                                f"(the caption's number); expected '{TOKEN_LINE}'")
        if not caption.strip():
            raise CapstoneError(f"{path}: line {number}: empty caption for '{fn}'")
        fn_to_captions.setdefault(fn, []).append(caption.strip())
    if not fn_to_captions:
        raise CapstoneError(f"{path}: no captions (expected lines '{TOKEN_LINE}')")
    return fn_to_captions


def load_flickr30k_results(path):
    """Captions from Flickr30k's ``results.csv`` (``image_name| comment_number| comment``).

    ``1.jpg| 0| A dog .`` -> ``{"1.jpg": ["A dog ."]}``; spaces around each field are trimmed.
    """
    fn_to_captions = collections.OrderedDict()
    lines = _lines(path)
    _, header = next(lines, (0, ""))
    if [field.strip().lower() for field in header.split("|")] != RESULTS_HEADER:
        raise CapstoneError(f"{path}: line 1: header is {header[:80]!r}, "
                            f"expected 'image_name| comment_number| comment'")
    for number, line in lines:
        fields = [field.strip() for field in line.split("|")]
        if len(fields) != 3:
            raise CapstoneError(f"{path}: line {number}: expected 3 fields 'image_name| comment_number| comment' "
                                f"separated by '|', got {len(fields)}: {line[:80]!r}; fix or delete the line")
        fn, n, caption = fields
        if not fn or not n.isdigit() or not caption:
            raise CapstoneError(f"{path}: line {number}: expected an image name, a comment number and a comment, "
                                f"got {line[:80]!r}")
        fn_to_captions.setdefault(fn, []).append(caption)
    if not fn_to_captions:
        raise CapstoneError(f"{path}: no captions after the header line")
    return fn_to_captions


def read_image_list(path):
    """(line number, file name) for each line of a Flickr8k split list such as ``Flickr_8k.trainImages.txt``."""
    return [(number, line.strip()) for number, line in _lines(path)]


def flickr8k_split_lists(token_path, fn_to_captions):
    """The split lists beside a token file -> {"train": [...], "val": [...], "test": [...]}, or None.

    None when none of the three lists is there; all three or none. Every listed image must have
    captions and be in one list only (an error names the list and line). Images with captions that
    no list names are left out with a warning, not an error: Flickr's own files are like that
    (Flickr8k.token.txt has 8,092 images, the lists 6,000 + 1,000 + 1,000).
    """
    folder = os.path.dirname(os.path.abspath(token_path))
    paths = {split: os.path.join(folder, name) for split, name in FLICKR8K_LISTS.items()}
    present = [split for split, path in paths.items() if os.path.exists(path)]
    if not present:
        return None
    if len(present) < len(paths):
        missing = [FLICKR8K_LISTS[split] for split in paths if split not in present]
        raise CapstoneError(f"{token_path}: found {[FLICKR8K_LISTS[s] for s in present]} beside it but not {missing}; "
                            f"give all three split lists or none")
    lists, where = {}, {}
    for split, path in paths.items():
        lists[split] = []
        for number, fn in read_image_list(path):
            if fn not in fn_to_captions:
                raise CapstoneError(f"{path}: line {number}: image '{fn}' has no captions in {token_path}")
            if fn in where:
                raise CapstoneError(f"{path}: line {number}: image '{fn}' is already listed at {where[fn]}")
            where[fn] = f"{path}: line {number}"
            lists[split].append(fn)
    warn_unlisted(token_path, [fn for fn in fn_to_captions if fn not in where])
    return lists


def warn_unlisted(source, unlisted):
    if unlisted:
        warnings.warn(f"{source}: {len(unlisted)} images with captions are in no split list and are left out "
                      f"(e.g. {unlisted[:3]})", stacklevel=3)
