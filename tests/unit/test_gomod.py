"""go.mod parsing (module, replace in all its forms) and byte-exact rewriting of replace paths."""

from __future__ import annotations

import pytest

from deployer.gomod import GoModSyntaxError, is_local_path, parse, rewrite_replaces


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
