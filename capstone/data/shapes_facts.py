"""Is a shapes caption true? Parse it with the dataset's grammar and judge it against the scene.

    verdict = judge_caption("a small red circle left of a big blue square", scene)
    verdict.true       # False
    verdict.problems   # ("says 'big blue square', the blue square is small",)
    fully_true_rates({"shapes_test_000000.jpg": "a red circle", ...}, load_scenes(captions_zip, "test"))
    # {"1": 0.93, "2": 0.71, "3": 0.4}: share of fully true captions, by number of shapes in the scene

A caption is fully true when it follows the grammar of ``shapes_captions`` (or combines its
phrases: "there is a red circle left of a blue square on a grey background"), every fact it
states holds (count, colour, kind, size, relation between shapes, region, background) and
every shape of the scene is mentioned. A caption that does not parse is not true.

The words come from ``shapes_captions`` (and the truth of "left of" and "in the corner" from
its ``_relation`` and ``_regions``), so the checker follows the grammar when the grammar grows.
"""

import dataclasses
import itertools
import os
import zipfile

from capstone.data.caption_files import _read_json_bytes
from capstone.data.shapes_captions import NUMBER_WORDS, PLURALS, RELATION_WORDS, _regions, _relation
from capstone.data.shapes_parse import ARRANGEMENTS, SIZE_OF_WORD, parse_caption
from capstone.errors import CapstoneError

MAX_SHAPES_MENTIONED = 6  # more than this cannot be a shapes caption (scenes hold 1-3)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the checker found: ``true`` when the caption parsed and ``problems`` is empty."""

    true: bool
    problems: tuple  # readable sentences: "says 'blue square', the scene has no blue square"


# ---------------------------------------------------------------------------------------
# Judging: match the mentioned shapes to the scene's shapes, then check every stated fact.


def _number(count):
    return NUMBER_WORDS.get(count, str(count))


def _name(colour, kind, count=1):
    """("red", "circle") -> "red circle"; count 2 -> "red circles"; no kind -> "red shape"."""
    noun = (kind or "shape") if count == 1 else PLURALS.get(kind, "shapes")
    return " ".join(word for word in (colour, noun) if word)


def _shape_name(shape):
    return _name(shape["colour"], shape["kind"])


def _wrong(mention, shape, keys=("colour", "kind", "size")):
    """The attributes a mention states that the shape does not have: ["colour"], [], ..."""
    return [key for key in keys if getattr(mention, key) is not None and getattr(mention, key) != shape[key]]


def _assignments(n_slots, n_shapes):
    """Every way to give each mentioned shape (slot) a different scene shape, or none (None)."""
    for assignment in itertools.product([None, *range(n_shapes)], repeat=n_slots):
        taken = [index for index in assignment if index is not None]
        if len(taken) == len(set(taken)):
            yield assignment


def _fact_problems(claims, slots, assignment, shapes):
    """Relations, regions and arrangements that do not hold when slots are these scene shapes."""
    shapes_of = {}
    for mention, index in zip(slots, assignment):
        if index is not None and not _wrong(mention, shapes[index], ("colour", "kind")):  # else said already
            shapes_of.setdefault(mention, []).append(shapes[index])
    problems = []
    for first, relation, second in claims.relations:
        for a, b in itertools.product(shapes_of.get(first, []), shapes_of.get(second, [])):
            actual = _relation(a, b)
            if a is not b and actual != relation:
                problems.append(f"says the {_shape_name(a)} is {RELATION_WORDS[relation][0]} the {_shape_name(b)}; "
                                f"it is {RELATION_WORDS[actual][0]} it")
    for mention, region in claims.regions:
        for shape in shapes_of.get(mention, []):
            true = _regions(shape)
            if region not in true:
                where = true[0] if true else "away from the corners, the sides and the middle"
                problems.append(f"says the {_shape_name(shape)} is {region}; it is {where}")
    for mention, arrangement in claims.arrangements:
        for a, b in itertools.combinations(shapes_of.get(mention, []), 2):
            if _relation(a, b) not in ARRANGEMENTS[arrangement]:
                actual = next(name for name, relations in ARRANGEMENTS.items() if _relation(a, b) in relations)
                problems.append(f"says the {_name(a['colour'], a['kind'], 2)} are {arrangement}; they are {actual}")
    return problems


def _cost(claims, slots, assignment, shapes):
    """How wrong the caption is under this matching; the matching with the least is judged."""
    unmatched = sum(index is None for index in assignment)
    return (2 * unmatched + len(shapes) - (len(slots) - unmatched)
            + sum(len(_wrong(m, shapes[i])) for m, i in zip(slots, assignment) if i is not None)
            + len(_fact_problems(claims, slots, assignment, shapes)))


def _match_problems(slots, assignment, shapes):
    """Wrong counts, colours, kinds and sizes, and the scene shapes nobody mentioned."""
    said, present = {}, {}
    for mention in slots:
        if mention.colour and mention.kind:
            said[mention.colour, mention.kind] = said.get((mention.colour, mention.kind), 0) + 1
    for shape in shapes:
        present[shape["colour"], shape["kind"]] = present.get((shape["colour"], shape["kind"]), 0) + 1
    counted = {key for key, n in said.items() if present.get(key) and n != present[key]}
    problems = [f"says {_number(said[key])} {_name(*key, said[key])}, the scene has {_number(present[key])}"
                for key in counted]
    for mention, index in zip(slots, assignment):
        name = _name(mention.colour, mention.kind)
        if (mention.colour, mention.kind) in counted:
            continue
        if not any(not _wrong(mention, shape, ("colour", "kind")) for shape in shapes):
            problems.append(f"says '{name}', the scene has no {name}")
        elif index is None:
            problems.append(f"says one {name} more than the scene has")
        elif _wrong(mention, shapes[index], ("colour", "kind")):
            problems.append(f"says '{name}' where the scene has the {_shape_name(shapes[index])}")
        elif _wrong(mention, shapes[index]):
            size_word = next(word for word, size in SIZE_OF_WORD.items() if size == mention.size)
            problems.append(f"says '{size_word} {name}', the {_shape_name(shapes[index])} is "
                            f"{shapes[index]['size']}")
    for number, shape in enumerate(shapes):
        if number not in assignment and (shape["colour"], shape["kind"]) not in counted:
            problems.append(f"the {_shape_name(shape)} is not mentioned")
    return problems


def _check_scene(scene):
    try:
        shapes = scene["shapes"]
        if all(shape["kind"] and shape["colour"] and shape["size"] and 0 <= shape["x"] <= 1 and 0 <= shape["y"] <= 1
               for shape in shapes) and scene["background"]:
            return shapes
    except (KeyError, TypeError):
        pass
    raise CapstoneError(f"not a shapes scene: {str(scene)[:200]} (expected {{'background', 'shapes': "
                        f"[{{kind, colour, size, x, y}}]}} as in annotations/scenes_*.json)")


def judge_caption(caption, scene):
    """Is every fact of ``caption`` true of ``scene`` (a scenes_*.json entry), and every shape mentioned?"""
    shapes = _check_scene(scene)
    try:
        claims = parse_caption(caption)
    except ValueError as error:
        return Verdict(False, (str(error),))
    problems = []
    if claims.total is not None and claims.total != len(shapes):
        problems.append(f"says {_number(claims.total)} shapes, the scene has {_number(len(shapes))}")
    if claims.background is not None and claims.background != scene["background"]:
        problems.append(f"says a {claims.background} background, the background is {scene['background']}")
    slots = [mention for mention in claims.mentions for _ in range(mention.count)]
    if len(slots) > MAX_SHAPES_MENTIONED:
        problems.append(f"mentions {len(slots)} shapes, the scene has {_number(len(shapes))}")
    else:
        best = min(_assignments(len(slots), len(shapes)), key=lambda a: _cost(claims, slots, a, shapes))
        problems += _match_problems(slots, best, shapes) + _fact_problems(claims, slots, best, shapes)
    problems = tuple(dict.fromkeys(problems))  # each once, in order
    return Verdict(not problems, problems)


def fully_true_rates(captions_by_fn, scenes_by_fn):
    """Share of fully true captions by number of shapes in the scene: {"1": 0.9, "2": 0.7, "3": 0.4}.

    captions_by_fn: {file name: one caption}; scenes_by_fn: ``load_scenes`` of the same split.
    Only the counts that occur get a key.
    """
    judged = {}
    for fn, caption in captions_by_fn.items():
        scene = scenes_by_fn.get(fn) or scenes_by_fn.get(os.path.basename(fn))
        if scene is None:
            raise CapstoneError(f"image '{fn}' has no scene: give the scenes of its split "
                                f"(load_scenes of the shapes captions zip)")
        judged.setdefault(len(_check_scene(scene)), []).append(judge_caption(caption, scene).true)
    return {str(count): sum(verdicts) / len(verdicts) for count, verdicts in sorted(judged.items())}


def format_rates(rates):
    """One line for people: "fully true: 1 shape 0.93  2 shapes 0.71  3 shapes 0.40"."""
    parts = [f"{count} shape{'' if count == '1' else 's'} {rate:.2f}" for count, rate in rates.items()]
    return "fully true: " + "  ".join(parts)


# ---------------------------------------------------------------------------------------
# Scenes on disk: annotations/scenes_{split}.json inside the shapes captions zip.


def _is_scenes_member(name):
    return os.path.basename(name).startswith("scenes_") and name.endswith(".json")


def load_scenes(captions_zip, split=None):
    """{file name: scene} of one split ("test"), or of every split, from a shapes captions zip."""
    try:
        zf = zipfile.ZipFile(captions_zip)
    except (OSError, zipfile.BadZipFile) as error:
        raise CapstoneError(f"{captions_zip}: cannot read it as a shapes captions zip ({error})") from None
    with zf:
        names = zf.namelist()
        members = [name for name in names if _is_scenes_member(name)]
        if split is not None:
            members = [name for name in members if name.endswith(f"scenes_{split}.json")]
        if not members:
            wanted = f"scenes_{split}.json" if split else "scenes_*.json"
            raise CapstoneError(f"{captions_zip}: has no {wanted}; scenes come with the zips that "
                                f"make_shapes_dataset writes")
        scenes = {}
        for member in members:
            where = f"{captions_zip}:{member}"
            try:
                for entry in _read_json_bytes(zf.read(member), where)["scenes"]:
                    scenes[entry["file_name"]] = {"background": entry["background"], "shapes": entry["shapes"]}
            except (KeyError, TypeError):
                raise CapstoneError(f"{where}: not a scenes file (expected {{'scenes': "
                                    f"[{{file_name, background, shapes}}]}})") from None
    return scenes


def scenes_of_sources(sources, fns):
    """The scenes of ``fns`` when caption sources (as for ``load_captions``) are shapes zips that hold
    them all; None otherwise (other data: no truth to check)."""
    scenes = {}
    for source in sources:
        zip_fn = source.split(".zip:", 1)[0] + ".zip" if ".zip:" in source else source
        if zip_fn.lower().endswith(".zip") and zipfile.is_zipfile(zip_fn):
            with zipfile.ZipFile(zip_fn) as zf:
                if any(_is_scenes_member(name) for name in zf.namelist()):
                    scenes.update(load_scenes(zip_fn))
    if scenes and all(fn in scenes or os.path.basename(fn) in scenes for fn in fns):
        return scenes
    return None
