"""Read the `module` and `replace` directives of a go.mod file, and rewrite replace paths in place.

The lexer follows Go's own (`golang.org/x/mod/modfile`): tokens are identifiers, interpreted
("...") or raw (`...`) strings, `(`, `)`; `//` starts a comment; a line is one statement unless
it opens a `verb (` block. Only what this project needs is interpreted; everything else is kept
as bytes. Invariant: `rewrite_replaces` changes only the path tokens it is told to change, so the
rest of the file (CRLF endings, comments, spacing, other directives) stays byte-for-byte.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Iterator, Mapping

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
    quote: str = ""  # '"' or '`' when the token was a string

    @property
    def is_punct(self) -> bool:
        return not self.quote and self.text in ("(", ")")


@dataclass(frozen=True)
class Replace:
    """One replace directive: `old_path [old_version] => new_path [new_version]`."""

    line: int
    old_path: str
    old_version: str | None
    new_path: str
    new_version: str | None
    new_token: Token  # the right-hand path token, for rewriting

    @property
    def is_local(self) -> bool:
        return is_local_path(self.new_path)


@dataclass(frozen=True)
class GoMod:
    module: str | None
    module_line: int  # 0 when there is no module directive
    replaces: tuple[Replace, ...]


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
            while i < n and text[i] != "\n":
                i += 1
        elif c in "()":
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


def _lines(text: str) -> Iterator[tuple[str | None, list[Token]]]:
    """Yield (block verb or None, tokens of one statement) for each non-empty statement."""
    block: str | None = None
    current: list[Token] = []
    for tok in _tokens(text):
        if tok is not None:
            current.append(tok)
            continue
        if not current:
            continue
        toks, current = current, []
        if block is not None:
            if toks[0].is_punct and toks[0].text == ")":
                if len(toks) > 1:
                    raise GoModSyntaxError(toks[1].line, "unexpected token after ')'")
                block = None
                continue
            yield block, toks
        elif len(toks) == 2 and toks[1].is_punct and toks[1].text == "(":
            block = toks[0].text
        else:
            yield None, toks
    if block is not None:
        raise GoModSyntaxError(text.count("\n") + 1, f"{block} block is not closed with ')'")


def _parse_replace(toks: list[Token]) -> Replace:
    line = toks[0].line
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
    )


def parse(data: bytes) -> GoMod:
    """Parse a go.mod file; raises GoModSyntaxError with the offending line."""
    text = data.decode(_ENCODING, _ERRORS)
    module: str | None = None
    module_line = 0
    replaces: list[Replace] = []
    for verb, toks in _lines(text):
        if verb is None:
            verb, toks = toks[0].text, toks[1:]
            if not toks:
                continue
        if verb == "module":
            if len(toks) != 1 or toks[0].is_punct:
                raise GoModSyntaxError(toks[0].line, "usage: module module/path")
            if module is not None:
                raise GoModSyntaxError(toks[0].line, f"repeated module statement (first on line {module_line})")
            module, module_line = toks[0].text, toks[0].line
        elif verb == "replace":
            replaces.append(_parse_replace(toks))
    return GoMod(module=module, module_line=module_line, replaces=tuple(replaces))


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
