"""Read one YAML file into plain Python data plus the source position of every key and value.

The common deploy.yaml is read by deployer.yamlfast (libyaml), which answers only where its reading
is the same as this module's; every other text, and every error, is read here.

ruamel.yaml keeps line/column data on its round-trip containers; we copy it into a flat map keyed
by the YAML path (a tuple of keys and indexes) so that later stages can point a diagnostic at the
exact line without holding on to ruamel objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from deployer import yamlfast
from deployer.errors import Diagnostic
from deployer.paths import MAX_CLIPPED, FileTooLarge, RefusedFile, clip, read_inside

YamlPath = tuple[Any, ...]

# A deploy.yaml is a few kilobytes; anything this large is not one.
MAX_FILE_BYTES = 1_000_000
# Its data is a handful of levels deep. Aliases can make a small file expand into a huge tree
# (each `*a` is a copy once the data is plain): both limits keep every later stage cheap.
MAX_DEPTH = 32
MAX_VALUES = 100_000


@dataclass(frozen=True)
class YamlDocument:
    """A parsed file. `values[path]` is (line, col) of the value at `path`, `keys[path]` of its key
    (for mapping entries); both 1-based. The root value sits at path ()."""

    file: Path
    data: Any
    values: dict[YamlPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[YamlPath, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: YamlPath, *, key: bool = False) -> tuple[int, int]:
        """Best position for `path`: its key (if asked and known), else its value, else the
        nearest ancestor's, so a diagnostic always has a line."""
        path = tuple(path)
        while True:
            if key and path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return (1, 1)
            path = path[:-1]
            key = False

    def diagnostic(self, path: YamlPath, message: str, *, key: bool = False) -> Diagnostic:
        line, col = self.position(path, key=key)
        return Diagnostic.at(self.file, line, col, message)


def read_yaml(file: Path, display: Path, root: Path) -> YamlDocument | Diagnostic:
    """Parse `file`, which must be a regular file inside `root` (see deployer.paths.read_inside);
    return the document, or one diagnostic naming `display` if it cannot be read."""
    try:
        raw = read_inside(file, root, limit=MAX_FILE_BYTES)
    except FileTooLarge as exc:
        return Diagnostic.at(display, 0, 0, f"file is {exc.size} bytes; a deploy.yaml is at most {MAX_FILE_BYTES}")
    except RefusedFile as exc:
        if exc.outside:
            return Diagnostic.at(display, 0, 0, f"{exc.strerror}; deployer reads nothing outside it: "
                                             "replace the symlink with the file itself")
        if exc.found == "a directory":
            return Diagnostic.at(display, 0, 0, "is a directory, not a deploy.yaml file")
        return Diagnostic.at(display, 0, 0, f"{exc.strerror}; a deploy.yaml must be a regular file")
    except OSError as exc:
        return Diagnostic.at(display, 0, 0, f"cannot read file: {exc.strerror}")
    return parse_yaml(raw, display)


def parse_yaml(raw: bytes, display: Path) -> YamlDocument | Diagnostic:
    """Parse the content of a deploy.yaml; `display` names it in diagnostics."""
    if len(raw) > MAX_FILE_BYTES:
        return Diagnostic.at(display, 0, 0, f"file is {len(raw)} bytes; a deploy.yaml is at most {MAX_FILE_BYTES}")
    if b"\x00" in raw:
        return Diagnostic.at(display, 0, 0, "file is binary (it contains NUL bytes), not YAML text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(raw, exc.start)
        return Diagnostic.at(display, line, col, f"byte 0x{raw[exc.start]:02x} is not valid UTF-8; save the file as UTF-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        return Diagnostic.at(display, 0, 0, "file is empty; it needs at least 'version: 1' and a 'functions' list")
    fast = yamlfast.read(text, MAX_DEPTH, MAX_VALUES)
    if fast is not None:
        return YamlDocument(display, *fast)
    return round_trip(text, display)


def round_trip(text: str, display: Path) -> YamlDocument | Diagnostic:
    """The reference reading, by ruamel: of any YAML, with the diagnostic of any error."""
    try:
        tree = YAML(typ="rt", pure=True).load(text)
    except RecursionError:  # ruamel composes nested collections recursively
        return Diagnostic.at(display, 0, 0, f"lists or mappings are nested too deeply to read; a deploy.yaml needs at most {MAX_DEPTH} levels")
    except MemoryError:
        return Diagnostic.at(display, 0, 0, "file is too large to read")
    except MarkedYAMLError as exc:
        return _yaml_error(display, exc)
    except ReaderError as exc:
        line, col = _line_col(text.encode("utf-8"), len(text[: exc.position].encode("utf-8")))
        return Diagnostic.at(display, line, col, f"character {exc.character!r} is not allowed in YAML")
    except YAMLError as exc:  # other ruamel errors carry no position
        return Diagnostic.at(display, 0, 0, clip(f"invalid YAML: {exc}"))
    except ValueError:  # Python refuses to make an int of more than 4300 digits
        return Diagnostic.at(display, 0, 0, "a number in this file is too large to read; a deploy.yaml needs no such number")
    except (NotImplementedError, AssertionError) as exc:  # ruamel's comment handling gives up on some valid layouts
        return _comment_error(display, exc)
    doc = YamlDocument(display, None)
    try:
        data = _Copier(doc).plain(tree, ())
    except _TooComplex as exc:
        return doc.diagnostic(exc.path, exc.message)
    doc = YamlDocument(display, data, doc.values, doc.keys)
    doc.values.setdefault((), (1, 1))
    return doc


def _yaml_error(display: Path, exc: MarkedYAMLError) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    problem = exc.problem or exc.context or "invalid YAML"
    if "'\\t'" in problem:
        problem = "tab character; YAML indents with spaces only, replace the tab with spaces"
    elif "duplicate key" in problem:
        first = exc.context_mark
        where = f" (first defined on line {first.line + 1})" if first else ""
        # ruamel quotes the key and both values: keep the key only, cut short.
        problem = f"{clip(problem.split(' with value')[0])}{where}; keep one of them"
    else:
        problem = f"invalid YAML: {problem}"
        if exc.context and exc.problem:
            problem += f" ({exc.context})"
        problem = clip(problem, MAX_CLIPPED)  # ruamel may quote the text it stumbled on
    return Diagnostic.at(display, line, col, problem)


def _comment_error(display: Path, exc: Exception) -> Diagnostic:
    """ruamel fails on some comments of valid YAML: "overlap in comment [CommentToken('# c\\n', line:
    0, col: 3), ...]" of one between a key and its value on a later line, followed by a blank line;
    an assertion of one on a block scalar's header after a blank line."""
    found = re.search(r"line: (\d+), col: (\d+)", str(exc))
    if found:
        return Diagnostic.at(display, int(found.group(1)) + 1, int(found.group(2)) + 1, "the YAML reader cannot place this "
                             "comment (a comment between a key and its value on a later line); move the comment to a line "
                             "of its own above the key")
    return Diagnostic.at(display, 0, 0, "the YAML reader cannot place a comment of this file (a comment on a block "
                                        "scalar's `|` or `>` line, or between a key and its value); move such comments "
                                        "to lines of their own above the keys")


def _line_col(raw: bytes, offset: int) -> tuple[int, int]:
    before = raw[:offset]
    line = before.count(b"\n") + 1
    col = offset - (before.rfind(b"\n") + 1) + 1
    return line, col


class _TooComplex(Exception):
    def __init__(self, path: YamlPath, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class _Copier:
    """Copies ruamel containers into dict/list/str/int/... recording positions on the way."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.count = 0
        self.active: set[int] = set()  # containers being copied: an alias to one is a cycle

    def plain(self, node: Any, path: YamlPath) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _TooComplex(path, f"more than {MAX_VALUES} values once aliases (*name) are expanded; "
                                    "a deploy.yaml needs far fewer")
        if not isinstance(node, (CommentedMap, CommentedSeq)):
            return _scalar(node)
        if len(path) > MAX_DEPTH:
            raise _TooComplex(path, f"lists or mappings are nested more than {MAX_DEPTH} levels deep; a deploy.yaml needs only a few")
        if id(node) in self.active:
            raise _TooComplex(path, "an alias (*name) refers to a list or mapping that contains it; remove the cycle")
        self.active.add(id(node))
        try:
            return self.mapping(node, path) if isinstance(node, CommentedMap) else self.sequence(node, path)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: CommentedMap, path: YamlPath) -> dict[Any, Any]:
        doc = self.doc
        if path == ():
            doc.values[path] = (node.lc.line + 1, node.lc.col + 1)
        out: dict[Any, Any] = {}
        for key, value in node.items():
            name = str(key)  # schema keys are strings; ruamel's string subclasses become plain ones
            child = path + (name,)
            kl, kc, vl, vc = _key_position(node, key)
            doc.keys[child] = (kl + 1, kc + 1)
            doc.values[child] = (vl + 1, vc + 1)
            out[name] = self.plain(value, child)
        return out

    def sequence(self, node: CommentedSeq, path: YamlPath) -> list[Any]:
        items = []
        for index, value in enumerate(node):
            child = path + (index,)
            try:
                il, ic = node.lc.item(index)
            except (TypeError, KeyError, IndexError):  # a tagged sequence (`!tag [...]`) keeps no item positions
                il, ic = node.lc.line, node.lc.col
            self.doc.values[child] = (il + 1, ic + 1)
            items.append(self.plain(value, child))
        return items


def _key_position(node: CommentedMap, key: Any) -> tuple[int, int, int, int]:
    """0-based (key line, key col, value line, value col) of `key` in `node`. A key merged in
    with `<<: *anchor` is not the mapping's own: it is found where the merged mapping has it,
    else (an unusual ruamel version) the mapping's own position stands for it."""
    own = (node.lc.data or {}).get(key)  # ruamel leaves data None when every key is merged
    if own is not None:
        kl, kc, vl, vc = own[:4]
        return kl, kc, vl, vc
    for merged in getattr(node, "merge", None) or ():
        if isinstance(merged, tuple):  # older ruamel: (position, mapping) pairs
            merged = merged[-1]
        if isinstance(merged, CommentedMap) and key in merged:
            return _key_position(merged, key)
    return node.lc.line, node.lc.col, node.lc.line, node.lc.col


def _scalar(node: Any) -> Any:
    if isinstance(node, bool) or node is None:
        return node
    for plain in (str, int, float):  # ruamel's scalar subclasses become the builtin type
        if isinstance(node, plain):
            return plain(node)
    return str(node)
