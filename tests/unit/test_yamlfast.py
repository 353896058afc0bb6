"""yamlfast answers only with what ruamel's round-trip reading (yamldoc.round_trip) gives: the same
data, of the same types, and the same position of every key and value (or, for a comment ruamel
cannot place, a diagnostic from ruamel: libyaml's reading is then the only one). Checked on every
YAML file of the repository, on thousands of random mutations of deploy.yaml files (most of them
broken), and on generated documents full of the scalars YAML 1.1 and 1.2 read differently. Each
check also makes sure the fast reading did answer for a good share of the texts: a reading that
always declined would pass the equality trivially."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from deployer import yamldoc, yamlfast
from deployer.errors import Diagnostic
from deployer.yamldoc import MAX_DEPTH, MAX_VALUES, YamlDocument, parse_yaml

REPO = Path(__file__).resolve().parents[2]
COMMENT_BUG = "cannot place this comment"


def typed(value: Any) -> Any:
    """`value` with the type of every part spelled out (True is not 1, 1.0 is not 1), order kept."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    return (type(value).__name__, repr(value))


def same_as_round_trip(text: str) -> bool:
    """Asserts the fast reading, when it answers, is the round-trip one; returns whether it answered."""
    fast = yamlfast.read(text, MAX_DEPTH, MAX_VALUES)
    if fast is None:
        return False
    reference = yamldoc.round_trip(text, Path("deploy.yaml"))
    if isinstance(reference, Diagnostic) and COMMENT_BUG in reference.summary:
        return True  # valid YAML that ruamel cannot read: libyaml's reading is the only one
    assert isinstance(reference, YamlDocument), f"ruamel refuses what libyaml read:\n{text!r}\n{reference}"
    data, values, keys = fast
    assert typed(data) == typed(reference.data), text
    assert values == reference.values, text
    assert keys == reference.keys, text
    return True


def repository_yaml() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "*.yaml", "*.yml"], cwd=REPO, capture_output=True, text=True, check=True)
    return [REPO / name for name in listed.stdout.split()]


def test_every_yaml_file_of_the_repository_reads_the_same_and_every_deploy_yaml_fast() -> None:
    files = repository_yaml()
    assert len(files) > 20
    answered = {file.name for file in files if same_as_round_trip(file.read_text(encoding="utf-8"))}
    deploy_files = [f for f in files if f.name in ("deploy.yaml", "deploy.example.yaml")]
    assert deploy_files and all(f.name in answered for f in deploy_files)


# What a mutation inserts: YAML's indicators, whitespace and breaks, quotes, and words YAML 1.1
# and 1.2 resolve differently.
PIECES = [":", ": ", "-", "- ", " ", "  ", "\n", "\r\n", "\t", "#", "'", '"', "{", "}", "[", "]", ",", "&a ", "*a", "!!str ",
          "!x ", "|", ">", "?", "%", "@", "`", "\\", "<<: ", "yes", "on", "~", "null", "1.5", "0o7", "012", "1_0", "2001-01-01",
          ".inf", "é", "\u2028", "\x85", "\x07", "\ufeff", "---\n", "...\n", '"k":v', "[x, 'k':1]", "|#c\n", ">-#\n", "   \n",
          " # c\n", "|\n  \n    x\n"]


def mutated(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randint(1, 3)):
        kind = rng.random()
        if kind < 0.2 and len(lines) > 1:  # a line moved, or repeated (duplicate keys)
            line = lines.pop(rng.randrange(len(lines))) if rng.random() < 0.5 else rng.choice(lines)
            lines.insert(rng.randrange(len(lines) + 1), line)
            continue
        text = "".join(lines)
        at = rng.randrange(len(text) + 1)
        if kind < 0.5:
            text = text[:at] + rng.choice(PIECES) + text[at:]
        elif kind < 0.8:
            text = text[:at] + text[at + rng.randint(1, 4):]
        else:
            text = text[:at] + rng.choice(PIECES) + text[at + 1:]
        lines = text.splitlines(keepends=True)
    return "".join(lines)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_deploy_yaml_files_read_the_same_or_not_fast(seed: int) -> None:
    rng = random.Random(seed)
    seeds = [f.read_text(encoding="utf-8") for f in repository_yaml() if f.name in ("deploy.yaml", "deploy.example.yaml")]
    answered = sum(same_as_round_trip(mutated(rng.choice(seeds), rng)) for _ in range(400))
    assert answered >= 80, answered  # a mutation often leaves a valid document


SCALARS = ["yes", "No", "on", "OFF", "y", "n", "true", "True", "TRUE", "tRUE", "false", "null", "Null", "NULL", "nULL", "~", "",
           "0", "00", "-0", "+1", "-1", "7", "012", "0o12", "0x1F", "0b11", "1_000", "1,000", "1.5", "-1.50", "+1.5", "1.", ".5",
           "0.0", "00.5", "1e3", "1E3", "6.02e+23", ".inf", "-.Inf", ".NaN", "NaN", "2001-12-14", "2001-12-14t21:59:43.10-05:00",
           "12:30", "1:20:30", "<<", "=", "!", "&", "*", "@x", "a b", "a: b", "a #b", "a# b", " lead", "trail ", "quote'd",
           'dq"', "é", "日本語", "tab\there", "back\\slash", "multi\nline", "9" * 30, "-", "--", "- x", "? x", "[x]", "{x}",
           "x,y", "%x", "|", ">", "'", '"']


def scalar(value: str, rng: random.Random, indent: int) -> str:
    style = rng.random()
    if style < 0.55:
        return value  # plain, whatever it means (or breaks)
    if style < 0.7:
        return "'" + value.replace("'", "''") + "'"
    if style < 0.85:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'
    pad = " " * (indent + 2)
    return rng.choice(["|", ">", "|-", ">+", "|2"]) + "\n" + "".join(pad + line + "\n" for line in value.split("\n")).rstrip("\n")


def block(rng: random.Random, depth: int, indent: int) -> str:
    """A mapping in block style at `indent`, of keys, scalars, nested mappings and sequences."""
    pad = " " * indent
    out = []
    for _ in range(rng.randint(1, 4)):
        key = rng.choice(["name", "memory", "on", "yes", "1", "null", "a b", "'quoted'", '"dq"', "é", "<<", "k"]) + str(
            rng.choice(["", "", "", rng.randint(0, 3)]))
        roll = rng.random()
        if roll < 0.15 and depth < 4:
            out.append(f"{pad}{key}:\n{block(rng, depth + 1, indent + 2)}")
        elif roll < 0.3 and depth < 4:
            dash = pad + rng.choice(["", "  "])
            items = [f"{dash}- {scalar(rng.choice(SCALARS), rng, indent + 2)}" for _ in range(rng.randint(1, 3))]
            out.append(f"{pad}{key}:\n" + "\n".join(items))
        elif roll < 0.4:
            flow = ", ".join(rng.choice(["a", "1", "yes", "'q'", "{b: 2}", "[]", "~", ""]) for _ in range(rng.randint(0, 3)))
            out.append(f"{pad}{key}: " + rng.choice([f"[{flow}]", "{" + flow.replace(",", ": x,") + "}"]))
        elif roll < 0.45:
            out.append(f"{pad}{key}: " + rng.choice(["&anchor x", "*anchor", "!!str 1", "!tag x", "!!int '5'"]))
        else:
            comment = rng.choice(["", "", "  # a comment", " #no space"])
            out.append(f"{pad}{key}: {scalar(rng.choice(SCALARS), rng, indent)}{comment}")
        if rng.random() < 0.1:
            out.append(rng.choice(["", "# between", pad + "  ", "\t"]))
    return "\n".join(out)


@pytest.mark.parametrize("seed", range(4))
def test_generated_documents_of_tricky_scalars_read_the_same_or_not_fast(seed: int) -> None:
    rng = random.Random(1000 + seed)
    answered = 0
    for _ in range(600):
        text = rng.choice(["", "", "---\n", "%YAML 1.2\n---\n", "# head\n"]) + block(rng, 0, 0) + rng.choice(["\n", "\n", "\n", "", "\n...\n"])
        if rng.random() < 0.2:
            text = text.replace("\n", "\r\n")
        answered += same_as_round_trip(text)
    assert answered >= 30, answered  # most break somewhere, or hold what only ruamel reads


def test_the_fast_reading_answers_for_deploy_yaml_and_declines_what_it_cannot_vouch_for(monkeypatch: pytest.MonkeyPatch) -> None:
    example = (REPO / "deploy.example.yaml").read_bytes()
    merged = b"defaults: &d\n  memory: 128\nfunctions:\n  - <<: *d\n    name: a\n"
    declined = [merged, b"a: 1\na: 2\n", b"a: !!str 1\n", b"%YAML 1.1\n---\na: yes\n", b"a: 0o17\n", b"a: 2001-01-01\n",
                b"- a\n", b"a: 1\n---\nb: 2\n", b"a: 1\rb: 2\n", b"1: a\n"]
    assert yamlfast.read(example.decode(), MAX_DEPTH, MAX_VALUES) is not None
    assert all(yamlfast.read(text.decode(), MAX_DEPTH, MAX_VALUES) is None for text in declined)

    def refused(text: str, display: Path) -> YamlDocument:
        raise AssertionError("read by ruamel")

    monkeypatch.setattr(yamldoc, "round_trip", refused)
    assert isinstance(parse_yaml(example, Path("deploy.yaml")), YamlDocument)  # libyaml alone read it
    monkeypatch.undo()
    doc = parse_yaml(merged, Path("deploy.yaml"))  # ruamel read it: the merge key is applied
    assert isinstance(doc, YamlDocument) and doc.data["functions"] == [{"memory": 128, "name": "a"}]


def test_limits_are_left_to_the_round_trip_reading_which_says_what_is_wrong() -> None:
    deep = "a:\n" + "".join("  " * i + "b:\n" for i in range(1, MAX_DEPTH + 3)) + "  " * (MAX_DEPTH + 3) + "c: 1\n"
    wide = "a: [" + ", ".join(["1"] * (MAX_VALUES + 1)) + "]\n"
    for text in (deep, wide):
        assert yamlfast.read(text, MAX_DEPTH, MAX_VALUES) is None
        assert not isinstance(parse_yaml(text.encode(), Path("deploy.yaml")), YamlDocument)


# What a hostile review found libyaml reading where ruamel refuses, or reads otherwise: each is
# declined, or (the last ones) read the same.
REVIEWED = ['a: ["b":1]\n', "a: ['b':1]\n", 'a: [ "b" :1 ]\n', 'a: [x, "b":c]\n', "a: |#c\n  x\n", "a: >#c\n  x\n",
            "a: |-#c\n  x\n", "a: |2#c\n    x\n", "a: |\n  \n    x\n", "a: >\n \n  x\n", "a:\n  b: |\n    \n      x\n",
            "a: 1\n...\n...\n", "a: 1\n... # x\n...\n", "? |\n  a\n: b\n", "? >\n  a\n: b\n", "a: [x, {b: 1}]\n",
            "a: |\n  x\n  y\n", "a: >-\n  x\n\n  y\n", "a: [1, 'two', {}]\n", "a:\n\n | # c\n", "l:\n\n | # c\n  m\n",
            "a:\n  # x\n  | # c\n   m\n", "a:\n\n  |2 # c\n   m\n", "a:\n  -\n\n    > # c\n     m\n", "l:\n | # c\n  m\n"]


@pytest.mark.parametrize("text", REVIEWED)
def test_what_a_review_found_is_declined_or_read_the_same(text: str) -> None:
    same_as_round_trip(text)


def test_a_comment_ruamel_cannot_place_is_read_by_libyaml_and_else_named() -> None:
    text = "role: # the execution role\n  arn:aws:iam::123456789012:role/x\n\nversion: 1\n"
    doc = parse_yaml(text.encode(), Path("deploy.yaml"))
    assert isinstance(doc, YamlDocument) and doc.data == {"role": "arn:aws:iam::123456789012:role/x", "version": 1}
    refused = parse_yaml(("x: &a 1\n" + text).encode(), Path("deploy.yaml"))  # an anchor: ruamel reads it, and fails
    assert isinstance(refused, Diagnostic) and (refused.line, refused.column) == (2, 7), refused
    assert refused.summary.startswith("the YAML reader cannot place this comment") and "above the key" in refused.summary


def test_a_comment_on_a_block_header_ruamel_fails_on_is_named_not_a_traceback() -> None:
    refused = parse_yaml(b"command:\n\n  | # the script\n  make\n", Path("deploy.yaml"))
    assert isinstance(refused, Diagnostic) and "a comment on a block scalar's `|` or `>` line" in refused.summary, refused
