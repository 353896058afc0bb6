"""Read go.mod files (`module`, `go`, `toolchain`, `require`, `replace`) and go.work files (`go`,
`toolchain`, `godebug`, `use`, `replace`), and rewrite replace paths in place.

The lexer follows Go's own (`golang.org/x/mod/modfile`): tokens are identifiers, interpreted
("...") or raw (`...`) strings, `(`, `)`; `//` starts a comment, and a comment after a statement on
its line is that statement's (`// indirect`); a line is one statement unless it opens a `verb (`
block. In a go.mod only what this project needs is interpreted; everything else is kept as bytes.
A go.work is read as strictly as Go reads it (an unknown directive is an error), because parts of
it are written again into a build context. Invariant: `rewrite_replaces` changes only the path
tokens it is told to change, so the rest of the file (CRLF endings, comments, spacing, other
directives) stays byte-for-byte.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterator, Mapping, NamedTuple

# go.mod is UTF-8; surrogateescape makes decode/encode a byte-exact round trip for any input.
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


class GoModSyntaxError(ValueError):
    """go.mod could not be read; `line` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}")


@dataclass(frozen=True)
class Token:
    text: str  # the value: unquoted for strings
    start: int  # offsets of the raw token (quotes included) in the decoded text
    end: int
    line: int
    quote: str = ""  # '"' or '`' when the token was a string; "//" for a comment (text without the //)

    @property
    def is_punct(self) -> bool:
        return not self.quote and len(self.text) == 1 and self.text in _PUNCT


@dataclass(frozen=True)
class Replace:
    """One replace directive: `old_path [old_version] => new_path [new_version]`."""

    line: int
    old_path: str
    old_version: str | None
    new_path: str
    new_version: str | None
    new_token: Token  # the right-hand path token, for rewriting
    # offsets of the directive's arguments (`old [v] => new [v]`, without the verb) in the decoded text
    start: int = 0
    end: int = 0

    @property
    def is_local(self) -> bool:
        return is_local_path(self.new_path)


@dataclass(frozen=True)
class Require:
    """One require directive: `path version`, `indirect` when its comment says `// indirect`."""

    line: int
    path: str
    version: str
    indirect: bool = False


@dataclass(frozen=True)
class GoMod:
    """A go.mod file. `go` and `toolchain` are as written (not checked: Go reads the go.mod files of
    dependencies leniently); their lines are 0 when absent."""

    module: str | None
    module_line: int  # 0 when there is no module directive
    replaces: tuple[Replace, ...]
    requires: tuple[Require, ...] = ()
    go: str | None = None
    go_line: int = 0
    toolchain: str | None = None
    toolchain_line: int = 0


@dataclass(frozen=True)
class Use:
    """One use directive of a go.work: a module directory, relative to the go.work's directory."""

    line: int
    path: str


@dataclass(frozen=True)
class Godebug:
    """One godebug setting of a go.work: `key=value`, as written (Go forbids quotes and commas)."""

    line: int
    key: str
    value: str


@dataclass(frozen=True)
class GoWork:
    """A go.work file, checked as Go checks it: `go` matches GO_VERSION, `toolchain` TOOLCHAIN.
    Lines are 0 for absent directives."""

    go: str | None
    go_line: int
    toolchain: str | None
    toolchain_line: int
    godebugs: tuple[Godebug, ...]
    uses: tuple[Use, ...]
    replaces: tuple[Replace, ...]


# modfile.GoVersionRE and modfile.ToolchainRE.
GO_VERSION = re.compile(r"([1-9][0-9]*)\.(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))?([a-z]+[0-9]+)?")
TOOLCHAIN = re.compile(r"default|go1(\.[^\s]*)?")


def is_local_path(path: str) -> bool:
    """Go's rule (modfile.IsDirectoryPath): ./ ../ . .. absolute, with either slash, or a drive."""
    return (
        path in (".", "..")
        or path.startswith(("./", ".\\", "../", "..\\", "/", "\\"))
        or (len(path) >= 2 and path[0].isascii() and path[0].isalpha() and path[1] == ":")
    )


def _is_ident_char(c: str) -> bool:
    """Go's isIdent; surrogates stand for undecodable bytes and count as printable."""
    if c in " ()[]{},":
        return False
    return not c.isspace() and (c.isprintable() or unicodedata.category(c) == "Cs")


def _tokens(text: str) -> Iterator[Token | None]:
    """Yield tokens; `None` marks the end of a line (newline outside a string)."""
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            yield None
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif text.startswith("//", i):
            j = i
            while j < n and text[j] != "\n":
                j += 1
            yield Token(text[i + 2 : j].rstrip("\r"), i, j, line, quote="//")
            i = j
        elif c in _PUNCT:  # Go's lexer too: `[`, `]` and `,` make a retract interval
            yield Token(c, i, i + 1, line)
            i += 1
        elif c in "\"`":
            j = i + 1
            while True:
                if j >= n:
                    raise GoModSyntaxError(line, "unexpected end of file in string")
                if text[j] == "\n":
                    raise GoModSyntaxError(line, "unexpected newline in string")
                if text[j] == c:
                    break
                j += 2 if (text[j] == "\\" and c == '"') else 1
            raw = text[i : j + 1]
            yield Token(_unquote(raw, line), i, j + 1, line, quote=c)
            i = j + 1
        elif _is_ident_char(c):
            j = i
            while j < n and _is_ident_char(text[j]) and not text.startswith("//", j):
                if text.startswith("/*", j):
                    raise GoModSyntaxError(line, "mod files must use // comments, not /* */ comments")
                j += 1
            yield Token(text[i:j], i, j, line)
            i = j
        else:
            raise GoModSyntaxError(line, f"unexpected input character {c!r}")
    yield None


_PUNCT = "()[]{},"

_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"'}


def _unquote(raw: str, line: int) -> str:
    """Go's strconv.Unquote for "..." and `...` strings."""
    body = raw[1:-1]
    if raw[0] == "`":
        return body.replace("\r", "")
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1] if i + 1 < len(body) else ""
        if e in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[e])
            i += 2
            continue
        width = {"x": 2, "u": 4, "U": 8}.get(e)
        digits = body[i + 2 : i + 2 + width] if width else body[i + 1 : i + 4]
        base = 16 if width else 8
        expected = width or 3
        try:
            if len(digits) != expected:
                raise ValueError
            value = int(digits, base)
            out.append(chr(value))  # \x and octal escapes are bytes in Go; paths are ASCII there
        except ValueError:
            shown = raw if len(raw) <= 60 else f"{raw[:60]}..."  # the message quotes the file: cut short
            raise GoModSyntaxError(line, f"invalid quoted string {shown if shown.isprintable() else ascii(shown)}") from None
        i += 2 + expected if width else 1 + expected
    return "".join(out)


class _Statement(NamedTuple):
    block: str | None  # the verb of the block holding the statement, None outside blocks
    toks: list[Token]  # its tokens, comments left out
    comment: str | None  # the comment after it on its line, without the //


def _lines(text: str) -> Iterator[_Statement]:
    """Yield each non-empty statement."""
    block: str | None = None
    current: list[Token] = []
    comment: str | None = None
    for tok in _tokens(text):
        if tok is not None:
            if tok.quote == "//":
                comment = tok.text if current else None
            else:
                current.append(tok)
            continue
        toks, suffix, current, comment = current, comment, [], None
        if not toks:
            continue
        if block is not None:
            if toks[0].is_punct and toks[0].text == ")":
                if len(toks) > 1:
                    raise GoModSyntaxError(toks[1].line, "unexpected token after ')'")
                block = None
                continue
            yield _Statement(block, toks, suffix)
        elif len(toks) == 2 and toks[1].is_punct and toks[1].text == "(":
            block = toks[0].text
        else:
            yield _Statement(None, toks, suffix)
    if block is not None:
        raise GoModSyntaxError(text.count("\n") + 1, f"{block} block is not closed with ')'")


def _parse_replace(line: int, toks: list[Token]) -> Replace:
    arrow = next((k for k, t in enumerate(toks) if t.text == "=>" and not t.quote), -1)
    left, right = toks[:arrow], toks[arrow + 1 :]
    usage = "usage: replace module/path [v1.2.3] => other/module v1.4 or replace module/path [v1.2.3] => ../local/directory"
    if arrow < 0 or len(left) not in (1, 2) or len(right) not in (1, 2) or any(t.is_punct for t in toks):
        raise GoModSyntaxError(line, usage)
    new_path = right[0].text
    new_version = right[1].text if len(right) == 2 else None
    if is_local_path(new_path) and new_version is not None:
        raise GoModSyntaxError(line, "replacement module directory path must not have a version")
    if not is_local_path(new_path) and new_version is None:
        raise GoModSyntaxError(line, "replacement module without version must be a directory path (rooted or starting with ./ or ../)")
    return Replace(
        line=line,
        old_path=left[0].text,
        old_version=left[1].text if len(left) == 2 else None,
        new_path=new_path,
        new_version=new_version,
        new_token=right[0],
        start=toks[0].start,
        end=toks[-1].end,
    )


def _parse_require(line: int, toks: list[Token], comment: str | None) -> Require:
    if len(toks) != 2 or any(t.is_punct for t in toks):
        raise GoModSyntaxError(line, "usage: require module/path v1.2.3")
    # modfile.isIndirect: the comment is `// indirect`, or starts with `// indirect;`
    words = (comment or "").split()
    indirect = words == ["indirect"] or (len(words) > 1 and words[0] == "indirect;")
    return Require(line=line, path=toks[0].text, version=toks[1].text, indirect=indirect)


def _single(line: int, toks: list[Token], usage: str) -> Token:
    """The one argument of a `module`, `go`, `toolchain`, `use` or `godebug` statement."""
    if len(toks) != 1 or toks[0].is_punct:
        raise GoModSyntaxError(line, usage)
    return toks[0]


def _statements(text: str, bare: bool = False) -> Iterator[tuple[str, int, list[Token], str | None]]:
    """(verb, line, arguments, comment) of each statement. A verb alone on its line is left out of
    a go.mod (as it always was here), kept (with no arguments) when `bare`."""
    for block, toks, comment in _lines(text):
        line = toks[0].line
        if block is None:
            block, toks = toks[0].text, toks[1:]
            if not toks and not bare:
                continue
        yield block, line, toks, comment


def _shown(text: str, limit: int = 60) -> str:
    """A value quoted from a file, for a message: cut short, and escaped when not printable."""
    text = text if len(text) <= limit else f"{text[:limit]}..."
    return text if text.isprintable() else ascii(text)


def parse(data: bytes) -> GoMod:
    """Parse a go.mod file; raises GoModSyntaxError with the offending line."""
    text = data.decode(_ENCODING, _ERRORS)
    module: str | None = None
    module_line = 0
    replaces: list[Replace] = []
    requires: list[Require] = []
    found: dict[str, Token] = {}  # go, toolchain
    for verb, line, toks, comment in _statements(text):
        if verb == "module":
            tok = _single(line, toks, "usage: module module/path")
            if module is not None:
                raise GoModSyntaxError(tok.line, f"repeated module statement (first on line {module_line})")
            module, module_line = tok.text, tok.line
        elif verb == "replace":
            replaces.append(_parse_replace(line, toks))
        elif verb == "require":
            requires.append(_parse_require(line, toks, comment))
        elif verb in ("go", "toolchain"):
            tok = _single(line, toks, f"{verb} directive expects exactly one argument")
            if verb in found:
                raise GoModSyntaxError(tok.line, f"repeated {verb} statement (first on line {found[verb].line})")
            found[verb] = tok
    go, toolchain = found.get("go"), found.get("toolchain")
    return GoMod(module=module, module_line=module_line, replaces=tuple(replaces), requires=tuple(requires),
                 go=go.text if go else None, go_line=go.line if go else 0,
                 toolchain=toolchain.text if toolchain else None, toolchain_line=toolchain.line if toolchain else 0)


def parse_work(data: bytes) -> GoWork:
    """Parse a go.work file (modfile.ParseWork's rules); raises GoModSyntaxError with the
    offending line."""
    text = data.decode(_ENCODING, _ERRORS)
    found: dict[str, Token] = {}  # go, toolchain
    godebugs: list[Godebug] = []
    uses: list[Use] = []
    replaces: list[Replace] = []
    for verb, line, toks, _ in _statements(text, bare=True):
        if verb in ("go", "toolchain"):
            tok = _single(line, toks, f"{verb} directive expects exactly one argument")
            if verb in found:
                raise GoModSyntaxError(tok.line, f"repeated {verb} statement (first on line {found[verb].line})")
            # Go checks the token as written: a quoted version is not one.
            pattern, form = (GO_VERSION, "1.23.0") if verb == "go" else (TOOLCHAIN, "go1.23.0 or default")
            if tok.quote or not pattern.fullmatch(tok.text):
                raise GoModSyntaxError(tok.line, f"invalid {verb} version {_shown(tok.text)}: must match format {form}")
            found[verb] = tok
        elif verb == "godebug":
            tok = _single(line, toks, "usage: godebug key=value")
            key, eq, value = tok.text.partition("=")
            if tok.quote or not eq or any(c in tok.text for c in "\"`',"):
                raise GoModSyntaxError(tok.line, "usage: godebug key=value")
            godebugs.append(Godebug(tok.line, key, value))
        elif verb == "use":
            tok = _single(line, toks, "usage: use local/dir")
            uses.append(Use(tok.line, tok.text))
        elif verb == "replace":
            replaces.append(_parse_replace(line, toks))
        else:
            raise GoModSyntaxError(line, f"unknown directive: {_shown(verb)}")
    go, toolchain = found.get("go"), found.get("toolchain")
    return GoWork(go=go.text if go else None, go_line=go.line if go else 0,
                  toolchain=toolchain.text if toolchain else None, toolchain_line=toolchain.line if toolchain else 0,
                  godebugs=tuple(godebugs), uses=tuple(uses), replaces=tuple(replaces))


def must_quote(path: str) -> bool:
    """Go's modfile.MustQuote."""
    for c in path:
        if c in " \"'`":
            return True
        if c in "()[]{}," and len(path) > 1:
            return True
        if not c.isprintable():
            return True
    return path == "" or "//" in path or "/*" in path


def _quote(path: str) -> str:
    out = ['"']
    for c in path:
        if c in '"\\':
            out.append("\\" + c)
        elif c.isprintable():
            out.append(c)
        else:
            out.append(f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
    out.append('"')
    return "".join(out)


def format_path(path: str) -> str:
    """`path` as a go.mod or go.work token: quoted when Go would have to (modfile.AutoQuote)."""
    return _quote(path) if must_quote(path) else path


def replace_arguments(data: bytes, rep: Replace, new_path: str | None = None) -> bytes:
    """The arguments of the replace directive `rep` of the file `data` as written
    (`old [version] => new [version]`), with the right-hand path set to `new_path` when given
    (quoted as in rewrite_replaces)."""
    text = data.decode(_ENCODING, _ERRORS)
    if new_path is None:
        out = text[rep.start : rep.end]
    else:
        tok = rep.new_token
        out = text[rep.start : tok.start] + _format_path(new_path, tok) + text[tok.end : rep.end]
    return out.encode(_ENCODING, _ERRORS)


def _format_path(path: str, original: Token) -> str:
    """Keep the original token's quoting style where it can hold the new path."""
    if original.quote == "`" and "`" not in path and "\n" not in path and "\r" not in path:
        return f"`{path}`"
    if original.quote == '"' or must_quote(path):
        return _quote(path)
    return path


def rewrite_replaces(data: bytes, new_paths: Mapping[int, str]) -> bytes:
    """Return `data` with the right-hand path of the replace directive on each given line set to
    the new path; every other byte is unchanged. Raises KeyError for a line without a replace."""
    text = data.decode(_ENCODING, _ERRORS)
    by_line = {r.line: r for r in parse(data).replaces}
    missing = sorted(set(new_paths) - set(by_line))
    if missing:
        raise KeyError(f"no replace directive on line(s) {', '.join(map(str, missing))}")
    edits = sorted(((by_line[ln].new_token, p) for ln, p in new_paths.items()), key=lambda e: e[0].start)
    parts: list[str] = []
    pos = 0
    for tok, path in edits:
        parts.append(text[pos : tok.start])
        parts.append(_format_path(path, tok))
        pos = tok.end
    parts.append(text[pos:])
    return "".join(parts).encode(_ENCODING, _ERRORS)
