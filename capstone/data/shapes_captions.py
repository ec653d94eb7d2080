"""The caption grammar of the shapes dataset: many true sentences about a scene, 5 kept.

    make_captions(rng, scene)  # ["A small red circle left of a big blue square", "two shapes, ...", ...]
"""

from capstone.data.shapes_scenes import SHAPES, pick

CAPTIONS_PER_IMAGE = 5
SIZE_WORDS = {"small": ("small", "little"), "big": ("big", "large")}
BACKGROUND_WORDS = {
    "plain": ("grey", "plain"), "noisy": ("noisy",), "shaded": ("shaded",), "striped": ("striped",),
}

PLURALS = {kind: kind + "s" for kind in SHAPES}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
RELATION_WORDS = {
    "left": ("left of", "to the left of"),
    "right": ("right of", "to the right of"),
    "above": ("above",),
    "below": ("below", "under"),
}
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}


def _with_article(phrase):
    """"orange star" -> "an orange star"; "red circle" -> "a red circle"."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(phrases):
    """["x"] -> "x"; ["x", "y"] -> "x and y"; ["x", "y", "z"] -> "x, y and z"."""
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _relation(a, b):
    """Where shape a is, seen from shape b: "left", "right", "above" or "below".

    Scenes only hold shapes that are clearly apart along the dominant axis (``_separated``),
    so the answer is unambiguous.
    """
    dx, dy = a["x"] - b["x"], a["y"] - b["y"]
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "above" if dy < 0 else "below"


def _regions(shape):
    """True phrases for where a shape is: ["in the top left corner", "in the corner", "on the left", ...]."""
    x, y = shape["x"], shape["y"]
    side = "left" if x < 0.35 else "right" if x > 0.65 else None
    level = "top" if y < 0.35 else "bottom" if y > 0.65 else None
    phrases = []
    if min(x, 1 - x) < 0.3 and min(y, 1 - y) < 0.3:
        corner = f"{'top' if y < 0.5 else 'bottom'} {'left' if x < 0.5 else 'right'} corner"
        phrases += [f"in the {corner}", "in the corner"]
    if side:
        phrases.append(f"on the {side}")
    if level:
        phrases.append(f"at the {level}")
    if abs(x - 0.5) < 0.12 and abs(y - 0.5) < 0.12:
        phrases.append("in the middle")
    return phrases


def _shape_phrase(rng, shape):
    """"a small red circle" or "a red circle": the size word comes half of the time."""
    words = [shape["colour"], shape["kind"]]
    if rng.random() < 0.5:
        words.insert(0, pick(rng, SIZE_WORDS[shape["size"]]))
    return _with_article(" ".join(words))


def _group_phrase(rng, group):
    """Shapes of one colour and kind: "a red circle", "two red circles", "two small red circles"."""
    if len(group) == 1:
        return _shape_phrase(rng, group[0])
    words = [NUMBER_WORDS[len(group)], group[0]["colour"], PLURALS[group[0]["kind"]]]
    sizes = {shape["size"] for shape in group}
    if len(sizes) == 1 and rng.random() < 0.4:
        words.insert(1, pick(rng, SIZE_WORDS[sizes.pop()]))
    return " ".join(words)


def _background(rng, background):
    """"striped background", "grey background", ... for a scene's background name."""
    return pick(rng, BACKGROUND_WORDS[background]) + " background"


def _single_captions(rng, shape, background):
    """Sentences about a picture with one shape."""
    colour_kind = f"{shape['colour']} {shape['kind']}"
    sentences = [
        _shape_phrase(rng, shape),
        f"{_shape_phrase(rng, shape)} on a {_background(rng, background)}",
        f"one {colour_kind}",
        f"a single {colour_kind} on a {_background(rng, background)}",
        f"a picture of {_shape_phrase(rng, shape)}",
        f"an image of {_shape_phrase(rng, shape)}",
        f"there is {_shape_phrase(rng, shape)} on a {_background(rng, background)}",
        f"{_with_article(pick(rng, SIZE_WORDS[shape['size']]) + ' ' + colour_kind)}",
    ]
    for region in _regions(shape):
        sentences.append(f"{_shape_phrase(rng, shape)} {region}")
        sentences.append(f"there is {_shape_phrase(rng, shape)} {region}")
    return sentences


def _pair_captions(rng, a, b, background):
    """Sentences about two shapes that differ in colour or kind."""
    if rng.random() < 0.5:
        a, b = b, a
    where = _relation(a, b)  # a is left of / right of / above / below b

    def relation():  # a fresh wording at every use
        return pick(rng, RELATION_WORDS[where])

    sentences = [
        f"{_shape_phrase(rng, a)} {relation()} {_shape_phrase(rng, b)}",
        f"{_shape_phrase(rng, b)} {pick(rng, RELATION_WORDS[OPPOSITE[where]])} {_shape_phrase(rng, a)}",
        f"there is {_shape_phrase(rng, a)} {relation()} {_shape_phrase(rng, b)}",
        f"a picture of {_shape_phrase(rng, a)} {relation()} {_shape_phrase(rng, b)}",
        f"{_shape_phrase(rng, a)} and {_shape_phrase(rng, b)}",
        f"{_shape_phrase(rng, b)} and {_shape_phrase(rng, a)} on a {_background(rng, background)}",
        f"two shapes, {_shape_phrase(rng, a)} and {_shape_phrase(rng, b)}",
    ]
    if a["kind"] == b["kind"]:
        sentences.append(f"two {PLURALS[a['kind']]}, one {a['colour']} and one {b['colour']}")
    if a["colour"] == b["colour"]:
        kinds = f"{_with_article(a['kind'])} and {_with_article(b['kind'])}"
        sentences.append(f"two {a['colour']} shapes, {kinds}")
    return sentences


def _group_captions(rng, shapes, groups, background):
    """Sentences about twins ("two red circles") or about three shapes."""

    def listing():  # the groups in a random order, each worded afresh
        return _join([_group_phrase(rng, groups[i]) for i in rng.permutation(len(groups))])

    count = NUMBER_WORDS[len(shapes)]
    sentences = [
        listing(),
        f"{listing()} on a {_background(rng, background)}",
        f"a picture of {listing()}",
        f"{listing()} on a {_background(rng, background)}",
    ]
    if len(groups) > 1:  # not for twins: "two shapes, two green triangles" sounds odd
        sentences += [f"{count} shapes, {listing()}", f"there are {count} shapes: {listing()}"]
    colours = list(dict.fromkeys(shape["colour"] for shape in shapes))
    if len(colours) == 1:
        sentences.append(f"{count} {colours[0]} shapes on a {_background(rng, background)}")
    if len(groups) == 1:  # twins or triplets: one colour, one kind
        sentences += [f"there are {listing()}", f"an image of {listing()}"]
    if len(groups) == 1 and len(shapes) == 2:  # twins
        a, b = shapes
        twin = f"{a['colour']} {a['kind']}"
        sentences += [
            f"{_with_article(twin)} {pick(rng, RELATION_WORDS[_relation(a, b)])} another {twin}",
            f"a pair of {a['colour']} {PLURALS[a['kind']]}",
            f"two {a['colour']} {PLURALS[a['kind']]} "
            + ("side by side" if _relation(a, b) in ("left", "right") else "one above the other"),
        ]
    return sentences


def make_captions(rng, scene):
    """``CAPTIONS_PER_IMAGE`` different true captions of a scene, in human style.

    Every caption names the colour of every shape; about half start with a capital letter
    and some end with a full stop, as people type them.
    """
    shapes, background = scene["shapes"], scene["background"]
    groups = {}
    for shape in shapes:
        groups.setdefault((shape["colour"], shape["kind"]), []).append(shape)
    groups = list(groups.values())
    if len(shapes) == 1:
        grammar, arguments = _single_captions, (shapes[0], background)
    elif len(shapes) == 2 and len(groups) == 2:
        grammar, arguments = _pair_captions, (shapes[0], shapes[1], background)
    else:
        grammar, arguments = _group_captions, (shapes, groups, background)
    sentences = list(dict.fromkeys(grammar(rng, *arguments)))  # distinct, in order
    if len(sentences) < CAPTIONS_PER_IMAGE:  # a bug in the grammar, not in anyone's input
        raise RuntimeError(f"shapes grammar made only {len(sentences)} different captions for {scene}")
    chosen = [sentences[i] for i in rng.permutation(len(sentences))[:CAPTIONS_PER_IMAGE]]
    styled = []
    for sentence in chosen:
        if rng.random() < 0.5:
            sentence = sentence[0].upper() + sentence[1:]
        if rng.random() < 0.3:
            sentence += "."
        styled.append(sentence)
    return styled
