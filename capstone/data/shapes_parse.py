"""Read a shapes caption into the facts it states, with the grammar of ``shapes_captions``.

    claims = parse_caption("A small red circle left of a big blue square.")
    claims.mentions    # (Mention(1, "red", "circle", "small"), Mention(1, "blue", "square", "big"))
    claims.relations   # ((<the red circle>, "left", <the blue square>),)
    parse_caption("the cat sat on the mat")  # ValueError: ... does not follow the shapes grammar ...

The parser reads the grammar's phrases in any sensible combination ("there is a red circle
left of a blue square on a grey background"), as a model may combine them. Its words come
from the tables of ``shapes_captions`` and the phrases of its ``_regions``, so it follows the
grammar when the grammar grows; ``shapes_facts`` judges the claims against a scene.
"""

import dataclasses

from capstone.captions import split_sentence
from capstone.data.shapes_captions import (
    BACKGROUND_WORDS, NUMBER_WORDS, PLURALS, RELATION_WORDS, SIZE_WORDS, _regions,
)
from capstone.data.shapes_scenes import COLOURS, SHAPES

# Word tables, turned around: word -> meaning.
KIND_OF_WORD = {**{kind: (kind, 1) for kind in SHAPES}, **{plural: (kind, 2) for kind, plural in PLURALS.items()}}
SIZE_OF_WORD = {word: size for size, words in SIZE_WORDS.items() for word in words}
BACKGROUND_OF_WORD = {word: name for name, words in BACKGROUND_WORDS.items() for word in words}
COUNT_OF_WORD = {word: count for count, word in NUMBER_WORDS.items()}
RELATION_OF_PHRASE = {phrase: relation for relation, phrases in RELATION_WORDS.items() for phrase in phrases}
# Every phrase ``_regions`` can say ("in the top left corner", "on the left", ...), found by asking it.
GRID = [i / 100 for i in range(1, 100)]
REGION_PHRASES = sorted({phrase for x in GRID for y in GRID for phrase in _regions({"x": x, "y": y})})
ARRANGEMENTS = {"side by side": ("left", "right"), "one above the other": ("above", "below")}
INTROS = ("there is", "there are", "a picture of", "an image of")
SINGLE_DETERMINERS = ("a", "an", "another", "one", "a single")


@dataclasses.dataclass(frozen=True, eq=False)  # compared by identity: two "a red circle" are two mentions
class Mention:
    """One noun phrase: "a small red circle" (count 1), "two red circles", "three red shapes" (kind None)."""

    count: int
    colour: str = None
    kind: str = None
    size: str = None


@dataclasses.dataclass(frozen=True)
class Claims:
    """Every fact a caption states; relations, regions and arrangements refer to its mentions."""

    mentions: tuple = ()
    relations: tuple = ()     # (mention, "left", mention): the first is left of the second
    regions: tuple = ()       # (mention, "in the top left corner")
    arrangements: tuple = ()  # (mention, "side by side")
    total: int = None         # "three shapes" -> 3
    background: str = None    # "plain", "noisy", "shaded" or "striped"

    def __add__(self, other):
        return Claims(*(getattr(self, f) + getattr(other, f) for f in ("mentions", "relations", "regions",
                                                                     "arrangements")),
                      self.total if other.total is None else other.total,
                      self.background if other.background is None else other.background)


# ---------------------------------------------------------------------------------------
# Parsing: every step yields (what it read, position after it), so alternatives are all tried.


class _Reader:
    def __init__(self, tokens):
        self.tokens, self.furthest = tokens, 0

    def phrase(self, pos, phrases):
        """Each phrase of ``phrases`` that the tokens at ``pos`` spell -> (phrase, pos after)."""
        for phrase in phrases:
            words = phrase.split()
            if self.tokens[pos:pos + len(words)] == words:
                self.furthest = max(self.furthest, pos + len(words))
                yield phrase, pos + len(words)

    def word(self, pos, table):
        """The meaning of the word at ``pos`` in ``table`` (word -> meaning)."""
        if pos < len(self.tokens) and self.tokens[pos] in table:
            self.furthest = max(self.furthest, pos + 1)
            yield table[self.tokens[pos]], pos + 1

    def optional(self, pos, table):
        yield None, pos
        yield from self.word(pos, table)


def _group(r, pos):
    """ "a small red circle", "another red circle", "two red circles", "a pair of red circles" -> Mention."""
    determiners = [(1, p) for _, p in r.phrase(pos, SINGLE_DETERMINERS)]
    determiners += [(count, p) for count, p in r.word(pos, COUNT_OF_WORD) if count > 1]
    determiners += [(2, p) for _, p in r.phrase(pos, ["a pair of"])]
    for count, pos in determiners:
        for size, pos in r.optional(pos, SIZE_OF_WORD):
            for colour, pos in r.word(pos, {c: c for c in COLOURS}):
                for (kind, number), pos in r.word(pos, KIND_OF_WORD):
                    if (number > 1) == (count > 1):
                        yield Mention(count, colour, kind, size), pos


def _placed_group(r, pos):
    """A group, then maybe where it is ("in the corner") or how twins stand ("side by side")."""
    for mention, pos in _group(r, pos):
        yield Claims(mentions=(mention,)), pos
        for region, after in r.phrase(pos, REGION_PHRASES):
            yield Claims(mentions=(mention,), regions=((mention, region),)), after
        if mention.count > 1:
            for arrangement, after in r.phrase(pos, ARRANGEMENTS):
                yield Claims(mentions=(mention,), arrangements=((mention, arrangement),)), after


def _chain(r, pos):
    """ "A left of B" (also "A left of B above C"): each group related to the one before it."""
    for claims, pos in _placed_group(r, pos):
        yield claims, pos
        for relation, after in _relation_phrases(r, pos):
            for more, end in _chain(r, after):
                related = (claims.mentions[-1], relation, more.mentions[0])
                yield claims + more + Claims(relations=(related,)), end


def _relation_phrases(r, pos):
    for phrase, after in r.phrase(pos, RELATION_OF_PHRASE):
        yield RELATION_OF_PHRASE[phrase], after


def _listing(r, pos):
    """Chains joined by "and" (the commas are gone): "two red circles, a blue star and a green square"."""
    for claims, pos in _chain(r, pos):
        yield claims, pos
        for start in [pos] + [after for _, after in r.phrase(pos, ["and"])]:
            for more, end in _listing(r, start):
                yield claims + more, end


def _kinds(r, pos, colour):
    """ "a circle and a square" after "two red shapes": one red mention per kind."""
    for _, pos in r.phrase(pos, ("a", "an")):
        for (kind, number), pos in r.word(pos, KIND_OF_WORD):
            if number == 1:
                claims = Claims(mentions=(Mention(1, colour, kind),))
                yield claims, pos
                for start in [pos] + [after for _, after in r.phrase(pos, ["and"])]:
                    for more, end in _kinds(r, start, colour):
                        yield claims + more, end


def _colours(r, pos, kind):
    """ "one red and one blue" after "two circles": one mention per colour."""
    for _, pos in r.phrase(pos, ["one"]):
        for colour, pos in r.word(pos, {c: c for c in COLOURS}):
            claims = Claims(mentions=(Mention(1, colour, kind),))
            yield claims, pos
            for start in [pos] + [after for _, after in r.phrase(pos, ["and"])]:
                for more, end in _colours(r, start, kind):
                    yield claims + more, end


def _body(r, pos):
    """What the caption says is there, without the background."""
    yield from _listing(r, pos)
    for total, pos in r.word(pos, COUNT_OF_WORD):
        counted = Claims(total=total)
        for _, after in r.phrase(pos, ["shapes"]):  # "two shapes, a red circle and ..."
            yield counted, after
            for claims, end in _listing(r, after):
                yield counted + claims, end
        for colour, after in r.word(pos, {c: c for c in COLOURS}):  # "two red shapes, a circle and a square"
            for _, after in r.phrase(after, ["shapes"]):
                yield counted + Claims(mentions=(Mention(total, colour),)), after
                for claims, end in _kinds(r, after, colour):
                    yield counted + claims, end
        for (kind, number), after in r.word(pos, KIND_OF_WORD):  # "two circles, one red and one blue"
            if number > 1:
                for claims, end in _colours(r, after, kind):
                    yield counted + claims, end


def _tails(r, claims, pos):
    """ "on a striped background" and "in the corner" (of the last group) at the end."""
    yield claims, pos
    for _, after in r.phrase(pos, ["on a", "on the"]):
        for background, after in r.word(after, BACKGROUND_OF_WORD):
            for _, after in r.phrase(after, ["background"]):
                if claims.background is None:
                    yield from _tails(r, dataclasses.replace(claims, background=background), after)
    if claims.mentions:
        for region, after in r.phrase(pos, REGION_PHRASES):
            yield from _tails(r, claims + Claims(regions=((claims.mentions[-1], region),)), after)


def parse_caption(caption):
    """A caption -> its Claims; raises ValueError (with the place it got stuck) when it does not parse."""
    if not isinstance(caption, str):
        raise ValueError(f"a caption is a string, got {type(caption).__name__}")
    r = _Reader(split_sentence(caption))
    if not r.tokens:
        raise ValueError("the caption is empty")
    for intro_end in [0] + [after for _, after in r.phrase(0, INTROS)]:
        for claims, pos in _body(r, intro_end):
            for claims, end in _tails(r, claims, pos):
                if end == len(r.tokens):
                    return claims
    if r.furthest >= len(r.tokens):
        raise ValueError(f"'{caption}' does not follow the shapes grammar (it stops too early)")
    raise ValueError(f"'{caption}' does not follow the shapes grammar (stuck at word {r.furthest + 1}, "
                     f"'{r.tokens[r.furthest]}')")
