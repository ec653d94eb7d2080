"""requirements*.txt, conda_requirements.txt and the Dockerfile must name the same versions.

No Docker engine or conda runs here, so these tests read the files: they fail as soon as
one of them drifts from the others. The requirements are read at test time, so a line
added to requirements.txt must be added to conda_requirements.txt too.
"""

import json
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# What conda provides that pip cannot: the interpreter, the installer, and Java (the Dockerfile
# gets Java from apt) for pycocoevalcap's tokenizer and METEOR.
CONDA_ONLY = {"python", "pip", "openjdk"}


def normalized_name(name):
    """PyPI's rule: "Scikit_Image" and "scikit-image" are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(line):
    """"numpy>=1.26, <3" -> ("numpy", frozenset({">=1.26", "<3"})); conda's "python=3.11" too."""
    match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?", line)
    assert match, f"cannot read the requirement {line!r}"
    spec = frozenset(part.replace(" ", "") for part in match.group(3).split(",") if part.strip())
    return normalized_name(match.group(1)), spec


def read_requirements(*names):
    """{package: spec} from pip requirements files; "-r other.txt" lines are the other file's job."""
    packages = {}
    for name in names:
        for line in (REPO / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                package, spec = parse_requirement(line)
                assert package not in packages, f"{name}: {package} is listed twice"
                packages[package] = spec
    return packages


def read_conda_file(text):
    """({package: spec} of conda's list, {package: spec} of its pip: list) from environment.yml text.

    Reads only the shape conda_requirements.txt uses (a "dependencies:" list with one nested
    "- pip:" list); any other line there fails the test rather than being skipped silently.
    """
    conda, pip, current, section = {}, {}, None, None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            section = line.split(":", 1)[0]
            current = conda if section == "dependencies" else None
            continue
        if section != "dependencies":
            continue
        item = re.fullmatch(r"(\s*)- (.+?)\s*", re.sub(r"\s+#.*", "", line))  # drop "  # comment"
        assert item, f"conda_requirements.txt: cannot read {line!r}"
        if item.group(2) == "pip:":
            current = pip
            continue
        if current is pip and len(item.group(1)) <= 2:
            current = conda  # back at the outer list's indentation
        package, spec = parse_requirement(item.group(2))
        assert package not in conda and package not in pip, f"conda_requirements.txt: {package} twice"
        current[package] = spec
    return conda, pip


def read_dockerfile(text):
    """[(INSTRUCTION, arguments)] with "\\" line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    ))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip() if " " in line.strip() else "")
        for line in joined.splitlines() if line.strip()
    ]


def dockerfile_pip_installs(instructions):
    """The argument lists of every ``pip install`` in RUN lines, quotes removed."""
    installs = []
    for instruction, arguments in instructions:
        if instruction == "RUN":
            for command in re.split(r"&&|;", arguments):
                words = [word.strip("'\"") for word in re.findall(r"\"[^\"]*\"|'[^']*'|\S+", command)]
                if "pip" in words and "install" in words:
                    installs.append(words[words.index("install") + 1:])
    return installs


def drift(requirements, conda_packages, extras):
    """Each disagreement between the pip requirements (+ extras) and the conda file, as a line."""
    problems = []
    wanted = dict(requirements, **extras)
    for package, spec in sorted(wanted.items()):
        if package not in conda_packages:
            problems.append(f"{package} is missing from conda_requirements.txt")
        elif conda_packages[package] != spec:
            problems.append(f"{package}: {sorted(conda_packages[package])} in conda, {sorted(spec)} in pip")
    for package in sorted(set(conda_packages) - set(wanted) - CONDA_ONLY):
        problems.append(f"{package} is in conda_requirements.txt only")
    return problems


@pytest.fixture
def dockerfile():
    return read_dockerfile((REPO / "Dockerfile").read_text())


def jupyter_extras(dockerfile):
    """{package: spec} the Dockerfile installs beside ``-r requirements.txt`` (jupyter)."""
    extras = {}
    for words in dockerfile_pip_installs(dockerfile):
        if "-r" in words:
            extras.update(parse_requirement(word) for word in words if not word.startswith("-")
                          and word != words[words.index("-r") + 1])
    return extras


def test_conda_file_matches_the_pip_requirements(dockerfile):
    requirements = read_requirements("requirements.txt", "requirements-dev.txt")
    conda, pip = read_conda_file((REPO / "conda_requirements.txt").read_text())
    assert "tensorflow" in requirements and "tensorflow" in pip
    assert drift(requirements, {**conda, **pip}, jupyter_extras(dockerfile)) == []


def test_drift_is_detected():
    requirements = {"numpy": frozenset({">=1.26", "<3"}), "tqdm": frozenset({">=4.66", "<5"})}
    conda, pip = read_conda_file(
        "name: x\ndependencies:\n  - python=3.11  # 3.11.*\n  - numpy>=1.26,<2\n  - pip:\n      - flask>=3\n"
    )
    assert conda == {"python": frozenset({"=3.11"}), "numpy": frozenset({">=1.26", "<2"})}
    assert drift(requirements, {**conda, **pip}, {}) == [
        "numpy: ['<2', '>=1.26'] in conda, ['<3', '>=1.26'] in pip",
        "tqdm is missing from conda_requirements.txt",
        "flask is in conda_requirements.txt only",
    ]


def test_conda_python_matches_the_docker_image(dockerfile):
    conda, _ = read_conda_file((REPO / "conda_requirements.txt").read_text())
    base_images = [arguments for instruction, arguments in dockerfile if instruction == "FROM"]
    assert base_images == ["python:3.11-slim"]
    assert conda["python"] == frozenset({"=3.11"})


def test_dockerfile_installs_requirements_txt_then_the_repository(dockerfile):
    installs = dockerfile_pip_installs(dockerfile)
    with_requirements = [words for words in installs if "-r" in words]
    assert len(with_requirements) == 1
    assert with_requirements[0][with_requirements[0].index("-r") + 1] == "requirements.txt"
    assert any(words[-1] == "." for words in installs), "the repository itself is never pip-installed"
    # Versions come from requirements.txt only: no package of it is pinned again in the Dockerfile.
    requirements = read_requirements("requirements.txt")
    extras = jupyter_extras(dockerfile)
    assert set(extras) == {"jupyter"}
    assert not set(extras) & set(requirements)
    copies = [arguments.split() for instruction, arguments in dockerfile if instruction == "COPY"]
    assert ["requirements.txt", "./"] in copies


def test_both_environments_have_java(dockerfile):
    conda, _ = read_conda_file((REPO / "conda_requirements.txt").read_text())
    assert "openjdk" in conda
    runs = " ".join(arguments for instruction, arguments in dockerfile if instruction == "RUN")
    assert re.search(r"apt-get install .*default-jre-headless", runs)


def test_dockerfile_runs_jupyter_on_8888_as_a_normal_user(dockerfile):
    instructions = [instruction for instruction, _ in dockerfile]
    users = [arguments for instruction, arguments in dockerfile if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert instructions.index("USER") < instructions.index("CMD")
    assert [arguments for instruction, arguments in dockerfile if instruction == "EXPOSE"] == ["8888"]
    command = json.loads(dict(dockerfile)["CMD"])
    assert command[:2] == ["jupyter", "notebook"]
    assert "--ip=0.0.0.0" in command and "--port=8888" in command
    assert command[-1] == "capstone/image_captioning.ipynb"
