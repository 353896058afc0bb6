"""go.mod parsing (module, go, toolchain, require, replace in all its forms), go.work parsing, and
byte-exact rewriting of replace paths."""

from __future__ import annotations

import pytest

from deployer.gomod import GoModSyntaxError, format_path, is_local_path, parse, parse_work, replace_arguments, rewrite_replaces


def test_parse_reads_module_path_and_line() -> None:
    mod = parse(b"// header\n\nmodule example.com/fn // trailing\n\ngo 1.22\n")
    assert (mod.module, mod.module_line) == ("example.com/fn", 3)


def test_parse_single_line_replace() -> None:
    (rep,) = parse(b"module m\n\nreplace example.com/a => ../a\n").replaces
    assert (rep.line, rep.old_path, rep.old_version, rep.new_path, rep.new_version) == (3, "example.com/a", None, "../a", None)
    assert rep.is_local


def test_parse_replace_block_gives_each_entry_its_own_line() -> None:
    data = b"module m\nreplace (\n\texample.com/a => ../a\n\n\texample.com/b => ./b\n)\n"
    reps = parse(data).replaces
    assert [(r.line, r.old_path, r.new_path) for r in reps] == [(3, "example.com/a", "../a"), (5, "example.com/b", "./b")]


def test_parse_version_qualified_left_side() -> None:
    (rep,) = parse(b"module m\nreplace example.com/a v1.2.3 => ../a\n").replaces
    assert (rep.old_path, rep.old_version, rep.new_path) == ("example.com/a", "v1.2.3", "../a")


def test_parse_non_local_replace_with_version() -> None:
    (rep,) = parse(b"module m\nreplace example.com/a => example.com/b v1.0.0\n").replaces
    assert (rep.new_path, rep.new_version, rep.is_local) == ("example.com/b", "v1.0.0", False)


def test_parse_interpreted_and_raw_quoted_paths() -> None:
    data = b'module "example.com/m"\nreplace (\n\t"example.com/a" => "../a dir"\n\texample.com/b => `../b\\raw`\n\texample.com/c => "../c\\x41\\u00e9"\n)\n'
    mod = parse(data)
    assert mod.module == "example.com/m"
    assert [r.new_path for r in mod.replaces] == ["../a dir", "../b\\raw", "../cA\u00e9"]


def test_parse_ignores_comments_and_replace_words_inside_them() -> None:
    data = b"module m\n// replace example.com/x => ../x\nreplace example.com/a => ../a // => ../b\n"
    reps = parse(data).replaces
    assert [(r.line, r.new_path) for r in reps] == [(3, "../a")]


def test_parse_crlf_line_endings() -> None:
    data = b"module m\r\n\r\nreplace (\r\n\texample.com/a => ../a\r\n)\r\nreplace example.com/b => ../b\r\n"
    mod = parse(data)
    assert mod.module == "m"
    assert [(r.line, r.new_path) for r in mod.replaces] == [(4, "../a"), (6, "../b")]


def test_parse_replace_inside_require_block_is_not_a_replace() -> None:
    assert parse(b"module m\nrequire (\n\texample.com/a v1.0.0\n)\n").replaces == ()


@pytest.mark.parametrize(
    "data,line",
    [
        (b"module m\nreplace example.com/a ../a\n", 2),
        (b"module m\nreplace example.com/a => ../a v1.0.0\n", 2),
        (b"module m\nreplace example.com/a => example.com/b\n", 2),
        (b'module m\n\nreplace example.com/a => "../a\n', 3),
        (b"module m\nreplace (\n\texample.com/a => ../a\n", 4),
        (b"module m\nmodule n\n", 2),
        (b"module m\n/* no */\n", 2),
    ],
)
def test_parse_errors_name_the_line(data: bytes, line: int) -> None:
    with pytest.raises(GoModSyntaxError) as info:
        parse(data)
    assert info.value.line == line


@pytest.mark.parametrize("path", ["./a", "../a", ".", "..", "/abs/a", ".\\a", "..\\a", "C:\\a"])
def test_local_paths_follow_gos_rule(path: str) -> None:
    assert is_local_path(path)


@pytest.mark.parametrize("path", ["example.com/a", "a", ".a", "..a", "a/../b"])
def test_module_paths_are_not_local(path: str) -> None:
    assert not is_local_path(path)


def test_rewrite_changes_only_the_given_path_tokens() -> None:
    data = (
        b"// top comment\r\nmodule example.com/fn\r\n\r\ngo 1.22\r\n\r\n"
        b"replace example.com/a   =>   ../../shared/a   // keep me\r\n"
        b"replace (\r\n"
        b"\texample.com/b v1.2.3 => ../../shared/b\r\n"
        b"\texample.com/c => example.com/d v1.0.0\r\n"
        b"\texample.com/e => ./inner/e\r\n"
        b")\r\n"
    )
    out = rewrite_replaces(data, {6: "./shared/a", 8: "./shared/b"})
    expected = data.replace(b"../../shared/a", b"./shared/a").replace(b"../../shared/b", b"./shared/b")
    assert out == expected


def test_rewrite_with_no_changes_is_identity() -> None:
    data = b"module m\r\nreplace a => ../a // x\r\n// \xff not utf-8\r\n"
    assert rewrite_replaces(data, {}) == data
    assert rewrite_replaces(data, {2: "../a"}) == data


def test_rewrite_keeps_quote_style() -> None:
    data = b'module m\nreplace "a" => "../a"\nreplace b => `../b`\n'
    out = rewrite_replaces(data, {2: "./shared/a", 3: "./shared/b"})
    assert out == b'module m\nreplace "a" => "./shared/a"\nreplace b => `./shared/b`\n'


def test_rewrite_quotes_paths_that_need_it() -> None:
    out = rewrite_replaces(b"module m\nreplace a => ../a\n", {2: "./shared/a b"})
    assert out == b'module m\nreplace a => "./shared/a b"\n'
    assert parse(out).replaces[0].new_path == "./shared/a b"


def test_rewrite_rejects_lines_without_replace() -> None:
    with pytest.raises(KeyError):
        rewrite_replaces(b"module m\nreplace a => ../a\n", {1: "./x"})


# --- require, go and toolchain -------------------------------------------------------------------


def test_parse_requires_single_and_block_with_indirect_comments() -> None:
    data = (b"module m\r\n\r\ngo 1.22.1\r\ntoolchain go1.23.4\r\n"
            b"require example.com/a v1.2.3\r\n"
            b"require (\r\n"
            b"\texample.com/b v0.0.0 // indirect\r\n"
            b"\t\"example.com/c\" v1.0.0 // indirect; for tests\r\n"
            b"\texample.com/d v2.0.0+incompatible // not indirect\r\n"
            b"\t// indirect on a line of its own\r\n"
            b")\r\n")
    mod = parse(data)
    assert [(r.line, r.path, r.version, r.indirect) for r in mod.requires] == [
        (5, "example.com/a", "v1.2.3", False),
        (7, "example.com/b", "v0.0.0", True),
        (8, "example.com/c", "v1.0.0", True),
        (9, "example.com/d", "v2.0.0+incompatible", False),
    ]
    assert (mod.go, mod.go_line, mod.toolchain, mod.toolchain_line) == ("1.22.1", 3, "go1.23.4", 4)


def test_parse_without_go_line() -> None:
    mod = parse(b"module m\n")
    assert (mod.go, mod.go_line, mod.toolchain, mod.requires) == (None, 0, None, ())


@pytest.mark.parametrize("data,line,message", [
    (b"module m\nrequire example.com/a\n", 2, "usage: require module/path v1.2.3"),
    (b"module m\nrequire (\n\texample.com/a v1 v2\n)\n", 3, "usage: require module/path v1.2.3"),
    (b"module m\ngo 1.22\ngo 1.23\n", 3, "repeated go statement (first on line 2)"),
    (b"module m\ntoolchain a b\n", 2, "toolchain directive expects exactly one argument"),
])
def test_parse_require_and_go_errors(data: bytes, line: int, message: str) -> None:
    with pytest.raises(GoModSyntaxError) as info:
        parse(data)
    assert (info.value.line, info.value.message) == (line, message)


def test_rewrite_is_byte_exact_with_requires_and_comments_around() -> None:
    data = b"module m\n\nrequire (\n\ta v0.0.0 // indirect\n)\n\nreplace a => ../a // why\n"
    assert rewrite_replaces(data, {7: "./shared/a"}) == data.replace(b"../a", b"./shared/a")


# --- go.work -------------------------------------------------------------------------------------


def test_parse_work_reads_every_directive() -> None:
    data = (b"// a workspace\n"
            b"go 1.23.0\n"
            b"toolchain go1.23.4\n"
            b"godebug (\n\tpanicnil=1\n)\n"
            b"godebug httpmuxgo121=0\n"
            b"use ./a\n"
            b"use (\n\t\"./b dir\"\n\t`./c`\n\td // no ./ needed\n)\n"
            b"replace example.com/x v1.0.0 => ./x\n"
            b"replace (\n\texample.com/y => example.com/z v1.1.0\n)\n")
    work = parse_work(data)
    assert (work.go, work.go_line, work.toolchain, work.toolchain_line) == ("1.23.0", 2, "go1.23.4", 3)
    assert [(g.line, g.key, g.value) for g in work.godebugs] == [(5, "panicnil", "1"), (7, "httpmuxgo121", "0")]
    assert [(u.line, u.path) for u in work.uses] == [(8, "./a"), (10, "./b dir"), (11, "./c"), (12, "d")]
    assert [(r.line, r.old_path, r.old_version, r.new_path, r.new_version) for r in work.replaces] == [
        (14, "example.com/x", "v1.0.0", "./x", None), (16, "example.com/y", None, "example.com/z", "v1.1.0")]


@pytest.mark.parametrize("data,line,message", [
    (b"go 1.22\nrequire example.com/a v1.0.0\n", 2, "unknown directive: require"),
    (b"go 1.22\nmodule m\n", 2, "unknown directive: module"),
    (b"go 1.22\nuse\n", 2, "usage: use local/dir"),
    (b"go 1.22\nuse ./a ./b\n", 2, "usage: use local/dir"),
    (b"go 1.22\ngo 1.23\n", 2, "repeated go statement (first on line 1)"),
    (b"go 1.22rc\n", 1, "invalid go version 1.22rc: must match format 1.23.0"),
    (b'go "1.22"\n', 1, "invalid go version 1.22: must match format 1.23.0"),
    (b"toolchain 1.22\n", 1, "invalid toolchain version 1.22: must match format go1.23.0 or default"),
    (b"godebug panicnil\n", 1, "usage: godebug key=value"),
    (b"godebug (\n\tpanicnil=1,2\n)\n", 2, "usage: godebug key=value"),
    (b"use (\n\t./a\n", 3, "use block is not closed with ')'"),
    (b"replace example.com/a => example.com/b\n", 1,
     "replacement module without version must be a directory path (rooted or starting with ./ or ../)"),
])
def test_parse_work_errors_name_the_line(data: bytes, line: int, message: str) -> None:
    with pytest.raises(GoModSyntaxError) as info:
        parse_work(data)
    assert (info.value.line, info.value.message) == (line, message)


@pytest.mark.parametrize("new_path,expected", [
    (None, b"example.com/a   v1.0.0 =>  `../a`"),
    ("./shared/a", b"example.com/a   v1.0.0 =>  `./shared/a`"),
    ("./shared/a b", b"example.com/a   v1.0.0 =>  `./shared/a b`"),
])
def test_replace_arguments_as_written_with_the_path_changed(new_path: str | None, expected: bytes) -> None:
    data = b"go 1.22\nreplace (\n\texample.com/a   v1.0.0 =>  `../a` // why\n)\n"
    (rep,) = parse_work(data).replaces
    assert replace_arguments(data, rep, new_path) == expected


@pytest.mark.parametrize("path,token", [("./a", "./a"), (".", "."), ("./a b", '"./a b"'), ('./a"b', '"./a\\"b"')])
def test_format_path_quotes_only_when_go_must(path: str, token: str) -> None:
    assert format_path(path) == token


def test_parse_accepts_retract_intervals() -> None:
    mod = parse(b"module m\nretract [v1.0.0, v1.1.0] // broken\nretract (\n\tv1.2.0\n\t[v1.3.0, v1.3.5]\n)\nreplace a => ../a\n")
    assert [(r.line, r.new_path) for r in mod.replaces] == [(7, "../a")]
