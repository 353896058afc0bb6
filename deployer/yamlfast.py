"""A fast reading of a deploy.yaml: the same data and positions as deployer.yamldoc's round-trip
reading, or no answer at all.

ruamel's round-trip parser is pure Python: about 0.3 s for the 200 functions of bench/plan_scale.py's
deploy.yaml, before a plan can ask AWS anything. libyaml, PyYAML's C parser, reads the same text ten
times faster and marks every node with the same line and column. But it reads
YAML 1.1 where ruamel reads 1.2, and it builds no values, so only its events are used, and only
where the two readings agree by construction:

- one document, without directives or `...` end markers; a mapping at its root;
- no tags, anchors or aliases (so no merge keys: `<<` resolves to a merge, not a string);
- keys that are plain or quoted strings, each once in its mapping (ruamel refuses a duplicate);
- no mapping within a flow sequence (ruamel refuses `["key":value]`, which libyaml reads);
- block scalars whose header holds no comment, and whose lines hold no line of spaces only
  (ruamel refuses some such texts, or fails on them, where libyaml reads them);
- scalars quoted or in blocks (strings), or plain scalars that ruamel's own resolver calls a
  string, a null or a boolean, or a decimal integer or fraction in its simplest spelling; not
  an empty one (`key:` alone), which the two parsers place differently;
- no character ruamel's reader refuses, no tab, no line break but `\\n` and `\\r\\n`;
- within yamldoc's limits of depth and size (past them, ruamel's reading says what is wrong).

Anything else, and every error libyaml meets, gives None: yamldoc then reads the text with ruamel,
whose answer or diagnostic stands. The one text read here that ruamel cannot read is valid YAML
with a comment between a key and its value on a later line, where ruamel's comment handling gives
up (yamldoc then names the comment). tests/unit/test_yamlfast.py holds both readings equal on every
YAML file of the repository and on mutated and generated documents.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.reader import Reader
from ruamel.yaml.resolver import VersionedResolver

# Without libyaml (a platform PyYAML ships no compiled wheel for), there is nothing to gain.
_LOADER: Any = getattr(yaml, "CSafeLoader", None)

# Plain scalars are resolved as ruamel's round-trip loader resolves them (YAML 1.2).
_RESOLVER = VersionedResolver()
_TAG = "tag:yaml.org,2002:"
_DECIMAL_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_DECIMAL_FRACTION = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
# `...` ends a document; libyaml takes two in a row for one, ruamel sees a second document.
_DOCUMENT_END = re.compile(r"^\.\.\.", re.MULTILINE)
_BLOCK_HEADER_COMMENT = re.compile(r"[|>][-+0-9]* *#")
# Characters the two parsers treat differently: line breaks but LF and CRLF (a lone CR, NEL, LS,
# PS), a byte order mark within the text (counted in columns or not), and tabs (ruamel refuses
# some in plain scalars that libyaml takes).
_UNSURE_CHARACTERS = re.compile("\r(?!\n)|[\x85\u2028\u2029\ufeff\t]")

Positions = dict[tuple[Any, ...], tuple[int, int]]


class _Unsure(Exception):
    """The text leaves the subset both parsers read alike."""


def read(text: str, max_depth: int, max_values: int) -> tuple[dict[str, Any], Positions, Positions] | None:
    """(data, value positions, key positions) as yamldoc's round-trip reading has them, 1-based;
    None when this reading cannot vouch for that."""
    if (_LOADER is None or Reader.NON_PRINTABLE.search(text) or _UNSURE_CHARACTERS.search(text)
            or _DOCUMENT_END.search(text)):
        return None
    parser = _LOADER(text)
    try:
        return _Walk(parser, text, max_depth, max_values).document()
    except Exception:  # noqa: BLE001 - outside the subset (_Unsure), libyaml's errors, any surprise: ruamel answers
        return None
    finally:
        parser.dispose()


class _Walk:
    def __init__(self, parser: Any, text: str, max_depth: int, max_values: int) -> None:
        self.parser = parser
        self.text = text
        self._lines: list[str] | None = None
        self.max_depth = max_depth
        self.max_values = max_values
        self.count = 0
        self.values: Positions = {}
        self.keys: Positions = {}

    def next(self) -> yaml.Event:
        event = self.parser.get_event()
        if not isinstance(event, yaml.Event):  # past the end of the stream
            raise _Unsure("no more events")
        return event

    def document(self) -> tuple[dict[str, Any], Positions, Positions]:
        _expect(self.next(), yaml.StreamStartEvent)
        start = _expect(self.next(), yaml.DocumentStartEvent)
        if start.version is not None or start.tags:
            raise _Unsure("a directive")
        root = _expect(self.next(), yaml.MappingStartEvent)
        self.values[()] = _position(root)
        data = self.node(root, ())
        _expect(self.next(), yaml.DocumentEndEvent)
        _expect(self.next(), yaml.StreamEndEvent)  # not a second document
        assert isinstance(data, dict)
        return data, self.values, self.keys

    def node(self, event: yaml.Event, path: tuple[Any, ...], in_flow_sequence: bool = False) -> Any:
        self.count += 1
        if self.count > self.max_values or isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Unsure("an alias, an anchor, or too many values")
        if isinstance(event, yaml.ScalarEvent):
            if event.style in ("|", ">"):
                self.check_block(event)
            return _scalar(event)
        if len(path) > self.max_depth or getattr(event, "tag", None) is not None:
            raise _Unsure("too deep, or tagged")
        if isinstance(event, yaml.MappingStartEvent) and not in_flow_sequence:
            return self.mapping(path)
        if isinstance(event, yaml.SequenceStartEvent):
            return self.sequence(path, bool(event.flow_style))
        raise _Unsure(f"{type(event).__name__} here")

    def check_block(self, event: yaml.ScalarEvent) -> None:
        """A block scalar's header and lines, where ruamel is stricter than libyaml."""
        if self._lines is None:
            self._lines = self.text.split("\n")
        start, end = event.start_mark, event.end_mark
        if start is None or end is None or _BLOCK_HEADER_COMMENT.match(self._lines[start.line], start.column):
            raise _Unsure("a block scalar's header")
        for line in self._lines[start.line + 1:end.line + 1]:
            spaces = line.rstrip("\r")
            if spaces and not spaces.strip(" "):
                raise _Unsure("a line of spaces only in a block scalar")

    def mapping(self, path: tuple[Any, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while not isinstance(key_event := self.next(), yaml.MappingEndEvent):
            if not isinstance(key_event, yaml.ScalarEvent) or key_event.anchor is not None or key_event.style in ("|", ">"):
                raise _Unsure("a key that is no plain or quoted scalar, or anchored")
            key = _scalar(key_event)
            if not isinstance(key, str) or key in out:
                raise _Unsure("a key that is no string, or a duplicate")
            child = path + (key,)
            value_event = self.next()
            self.keys[child] = _position(key_event)
            self.values[child] = _position(value_event)
            out[key] = self.node(value_event, child)
        return out

    def sequence(self, path: tuple[Any, ...], flow: bool) -> list[Any]:
        items: list[Any] = []
        while not isinstance(item_event := self.next(), yaml.SequenceEndEvent):
            child = path + (len(items),)
            self.values[child] = _position(item_event)
            items.append(self.node(item_event, child, in_flow_sequence=flow))
        return items


def _expect(event: yaml.Event, kind: type[yaml.Event]) -> Any:
    if not isinstance(event, kind):
        raise _Unsure(f"{type(event).__name__} where {kind.__name__} was expected")
    return event


def _position(event: yaml.Event) -> tuple[int, int]:
    mark = event.start_mark
    if mark is None:
        raise _Unsure("an event without a position")
    return mark.line + 1, mark.column + 1


def _scalar(event: yaml.ScalarEvent) -> Any:
    if event.tag is not None:
        raise _Unsure("a tag")
    value = event.value
    if event.style not in (None, ""):  # quoted, or a block: a string
        return value
    if not value:  # an empty value: libyaml marks it after the colon, ruamel where the next token starts
        raise _Unsure("an empty plain scalar")
    tag = _RESOLVER.resolve(ScalarNode, value, (True, False))
    if tag == _TAG + "str":
        return value
    if tag == _TAG + "null":
        return None
    if tag == _TAG + "bool":
        return value.lower() == "true"
    if tag == _TAG + "int" and _DECIMAL_INT.fullmatch(value):
        return int(value)
    if tag == _TAG + "float" and _DECIMAL_FRACTION.fullmatch(value):
        return float(value)
    raise _Unsure(f"a plain scalar ruamel reads as {tag}")
