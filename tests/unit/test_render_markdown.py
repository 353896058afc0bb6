"""Markdown plans sized for a pull-request comment: whatever the plan (500 functions, thousands,
huge hostile names and reasons), the comment stays under GitHub's 65,536-character limit counted
every way (characters, UTF-16 code units, CRLF line breaks), starts with the intact summary line,
leaves out only whole pieces (rows, <details> sections, names) from the end, says so in a note
naming where the full plan is, and keeps every value inert, cut or not.

Markdown is read back as GitHub would render it (test_render.render_html: markdown-it-py, then XML).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Iterator

import pytest

from deployer.explain import reason
from deployer.function_config import FunctionConfig
from deployer.markdown_budget import GITHUB_LIMIT, clip, size
from deployer.plan import Action, FunctionPlan, Plan, Reason, ReasonCode, make_plan
from deployer.render import detail_lines, markdown, summary, terminal_text
from deployer.state import Desired, FunctionState, ImageState, Observed
from tests.unit.test_render import (ALLOWED_ELEMENTS, CONTROL, DESIRED, HOSTILE, IMAGE, NEW, RUNNING, content,
                                    render_html)

# Every hostile value at once, repeated past any cap: what a cut could break is everywhere.
HUGE = "".join(HOSTILE.values()) * 40 + " &#124; &#96; <!-- x --> `a|b` &#"
ROLE = "arn:aws:iam::123456789012:role/fn"
NOTE = re.compile(r"^_.*(left out|not in this table).*_$", re.MULTILINE)


def function(index: int, name: str, long_reason: str) -> tuple[Desired, Observed]:
    """A mix of every kind of function: unchanged, to build, to update (some after a failed update
    quoting a long AWS message), to configure, to create, blocked."""
    desired = replace(DESIRED, name=name)
    match index % 7:
        case 0:
            return desired, Observed(replace(RUNNING, code_sha256=NEW), IMAGE)
        case 1:
            return desired, Observed(RUNNING, ImageState(True))
        case 2:
            return desired, Observed(replace(RUNNING, last_update_status="Failed", last_update_reason=long_reason), IMAGE)
        case 3:
            return desired, Observed(RUNNING, IMAGE)
        case 4:
            return replace(desired, config=FunctionConfig(memory=512)), Observed(replace(RUNNING, code_sha256=NEW), IMAGE)
        case 5:
            return replace(desired, config=FunctionConfig(role=ROLE)), Observed(FunctionState(exists=False), IMAGE)
        case _:
            return desired, Observed(replace(RUNNING, package_type="Zip"), IMAGE)


def many(count: int, name: str = "fn-{index:05d}", long_reason: str = "x" * 5000) -> Plan:
    return make_plan([function(index, name.format(index=index), long_reason) for index in range(count)])


def hostile_names(count: int) -> Plan:
    """Names and reasons only a plan file can hold (deploy.yaml's schema bounds names)."""
    plan = many(count, name="{index:05d}-" + HUGE, long_reason=HUGE)
    # A blocked function's reason quoting a hostile value (as a damaged plan file could).
    return replace(plan, functions=tuple(replace(fp, reason=Reason(ReasonCode.NOT_AN_IMAGE_FUNCTION, HUGE))
                                         if fp.action is Action.BLOCKED else fp for fp in plan.functions))


def assert_within_github_limit(md: str) -> None:
    assert len(md) < GITHUB_LIMIT
    assert len(md.encode("utf-16-le")) // 2 < GITHUB_LIMIT
    assert len(md.replace("\n", "\r\n")) < GITHUB_LIMIT


def details_sections(md: str) -> Iterator[str]:
    """The raw text of each function's <details> (the unchanged fold's summary has no <code>)."""
    for block in md.split("<details>\n")[1:]:
        if block.startswith("<summary><code>"):
            yield block


def assert_whole_and_inert(plan: Plan, md: str) -> None:
    """The checks every rendering must pass, cut or not."""
    assert_within_github_limit(md)
    assert md.split("\n", 1)[0] == f"### {summary(plan)}"
    assert md.count("<details>") == md.count("</details>")
    assert not CONTROL.search(md)
    # Only the renderer's own tags: every `<` of a value is a character reference.
    assert re.sub(r"</?(details|summary|code)>", "", md).count("<") == 0
    root = render_html(md)  # well-formed: no tag left open, no element a value made
    assert {element.tag for element in root.iter()} <= ALLOWED_ELEMENTS
    assert len(root.findall("details")) == md.count("<details>")
    assert all(len(d.findall("summary")) == 1 for d in root.findall("details"))
    # Every row whole: as many cells as the header, none split by a value's `|`.
    rows = root.findall(".//tr")
    assert len({len(row) for row in rows}) <= 1
    table_lines = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table_lines) == len(rows) + bool(rows)  # + the delimiter row
    assert all(line.endswith(" |") or line.endswith("---|") for line in table_lines)
    # A note when, and only when, something was left out.
    in_table, in_details = shown_functions(md)
    names = [fp.name for fp in changing(plan)]
    assert ("function(s) are left out" in md) == (len(in_details) < len(names))
    assert ("changing functions are not in this table" in md) == (len(in_table) < len(names))
    unchanged = [terminal_text(fp.name) for fp in plan.functions if fp.action is Action.NOOP]
    listed, more = folded(md)
    assert more == (len(listed) < len(unchanged))
    assert all(name == shown or (shown.endswith("…") and name.startswith(shown[:-1])) for name, shown in zip(unchanged, listed))


def folded(md: str) -> tuple[list[str], bool]:
    """The unchanged names the fold lists, as rendered, and whether it says more are not listed."""
    folds = [d for d in render_html(md).findall("details") if d.find("summary/code") is None]
    if not folds:
        return [], False
    [paragraph] = folds[0].findall("p")
    codes = [content(code) for code in paragraph.iter("code")]
    more = bool(re.search(r"(\band|Not listed here:) \d+ more \(", content(paragraph)))
    return (codes[:-1] if more else codes), more  # the last code of a note is where the full plan is


def shown_functions(md: str) -> tuple[list[str], list[str]]:
    """The function names of the table's rows and of the <details> sections, as rendered."""
    root = render_html(md)
    in_table = [content(row[1]) for row in root.findall(".//tbody/tr")]
    in_details = [content(d.find("summary")).rsplit(": ", 1)[0] for d in root.findall("details")  # type: ignore[arg-type]
                  if d.find("summary/code") is not None]
    return in_table, in_details


def changing(plan: Plan) -> list[FunctionPlan]:
    return [fp for fp in plan.functions if fp.action is not Action.NOOP]


def test_a_small_plan_is_whole_with_no_note() -> None:
    plan = many(12, long_reason="short")
    md = markdown(plan)
    assert_whole_and_inert(plan, md)
    in_table, in_details = shown_functions(md)
    assert in_table == in_details == [fp.name for fp in changing(plan)]
    assert not NOTE.search(md) and "plan.json" not in md


def test_blocked_functions_are_in_the_table_and_unchanged_ones_folded_with_their_count() -> None:
    plan = many(12, long_reason="short")
    md = markdown(plan)
    in_table, _ = shown_functions(md)
    blocked = [fp.name for fp in plan.functions if fp.action is Action.BLOCKED]
    unchanged = [fp.name for fp in plan.functions if fp.action is Action.NOOP]
    assert blocked and set(blocked) <= set(in_table) and not set(unchanged) & set(in_table)
    [fold] = [d for d in render_html(md).findall("details") if d.find("summary/code") is None]
    assert content(fold.find("summary")) == f"{len(unchanged)} unchanged"  # type: ignore[arg-type]
    assert [content(code) for code in fold.iter("code")] == unchanged


def test_a_plan_without_changes_says_so_and_folds_every_function() -> None:
    plan = make_plan([(replace(DESIRED, name=f"fn-{i}"), Observed(replace(RUNNING, code_sha256=NEW), IMAGE)) for i in range(3)])
    md = markdown(plan)
    assert md.startswith("### Plan: 3 unchanged\n\nNo function changes.\n\n<details>\n<summary>3 unchanged</summary>\n")
    assert_whole_and_inert(plan, md)
    assert markdown(Plan(())) == "### Plan: no functions\n\n"


def test_500_functions_with_very_long_reasons_stay_under_the_limit_with_every_change_in_the_table() -> None:
    plan = many(500)
    md = markdown(plan, "plan.json")
    assert_whole_and_inert(plan, md)
    in_table, in_details = shown_functions(md)
    names = [fp.name for fp in changing(plan)]
    assert in_table == names  # every changing function listed, if only by name and action
    assert 0 < len(in_details) < len(names) and in_details == names[: len(in_details)]  # dropped from the end
    left_out = len(names) - len(in_details)
    assert f"_The details of {left_out} function(s) are left out, to stay under GitHub's comment limit; " \
           "the full plan is in `plan.json`._\n" in md
    assert md.endswith("._\n")


def test_the_note_says_how_to_get_the_full_plan_when_none_is_saved() -> None:
    md = markdown(many(500))
    assert "for the full plan, run `deployer plan --out plan.json` (in CI: see the JSON plan artifact)._" in md


def test_the_saved_plan_s_name_is_shown_inert_and_capped() -> None:
    md = markdown(many(500), "out/`evil`|</details>\n::error::x" + "p" * 1000)
    assert_whole_and_inert(many(500), md)
    assert "the full plan is in <code>out/&#96;evil&#96;&#124;&#60;/details&#62; ::error::x" in md
    assert "p" * 200 not in md


def test_thousands_of_changing_functions_cut_the_table_at_a_whole_row_with_a_note() -> None:
    plan = many(3000)
    md = markdown(plan, "plan.json")
    assert_whole_and_inert(plan, md)
    in_table, in_details = shown_functions(md)
    names = [fp.name for fp in changing(plan)]
    assert 0 < len(in_table) < len(names) and in_table == names[: len(in_table)]
    assert in_details == []
    assert (f"{len(names) - len(in_table)} of {len(names)} changing functions are not in this table, to stay under "
            "GitHub's comment limit; the full plan is in `plan.json`.") in md
    assert f"_The details of {len(names)} function(s) are left out" in md
    assert "This table shows names and actions only: with reasons and digests it would not fit in a comment." in md
    # Little room is left for the unchanged names: those that fit, then how many are not listed.
    assert re.search(r"\n(`fn-\d+`(, `fn-\d+`)* and|Not listed here:) \d+ more \(the full plan is in `plan.json`\)\n", md)


@pytest.mark.parametrize("count", [1, 6, 60, 500])
def test_huge_hostile_names_and_reasons_stay_inert_when_cut(count: int) -> None:
    plan = hostile_names(count)
    md = markdown(plan)
    assert_whole_and_inert(plan, md)
    in_table, in_details = shown_functions(md)
    # What shows of a cut value is the value itself, up to the ellipsis: no reference or span cut.
    for shown_names in (in_table, in_details):
        for shown, fp in zip(shown_names, changing(plan)):
            assert shown.endswith("…") and terminal_text(fp.name).startswith(shown[:-1]), shown
    # A reason too long for its cell shows its own beginning, then the ellipsis.
    rows = render_html(md).findall(".//tbody/tr")
    for row, fp in zip(rows, changing(plan)):
        if len(row) == 6:
            assert content(row[5]).strip() == clip(terminal_text(reason(fp)), 500).strip()
    assert not rows or len(rows[0]) == 3 or any(content(row[5]).strip().endswith("…") for row in rows)


def test_characters_outside_the_bmp_count_twice() -> None:
    plan = many(500, name="{index:05d}-" + "\U0001F600" * 60, long_reason="\U0001F4A5" * 3000)
    md = markdown(plan)
    assert_whole_and_inert(plan, md)
    assert len(md.encode("utf-16-le")) // 2 > len(md)  # the emoji are there, and were counted as such


def test_size_counts_utf16_units_and_crlf_and_clip_never_passes_its_limit() -> None:
    assert size("a\n\U0001F600") == 1 + 2 + 2
    assert size("\ud800") == 1  # a lone surrogate, as JSON can carry: counted, not an error
    assert clip("abcdef", 4) == "abc…" and clip("abc", 3) == "abc" and clip("abcd", 1) == "…"


def test_detail_lines_are_whole_lines_of_one_function() -> None:
    [fp] = changing(many(2, long_reason=HUGE))
    lines = detail_lines(fp)
    assert lines[0].startswith("- reason: ") and all("\n" not in line for line in lines)
    assert all(len(line) < 2000 * 6 + 20 for line in lines)


def test_a_huge_hostile_environment_name_from_a_plan_file_stays_capped_under_the_summary() -> None:
    plan = replace(many(500), environment=HUGE)
    md = markdown(plan)
    assert_whole_and_inert(plan, md)
    assert md.split("\n")[2].startswith("Environment: <code>&#60;/details&#62;") and md.split("\n")[2].endswith("…</code>")


@pytest.mark.parametrize(("name", "shown"), [
    ("ab" * 10**6, "ab" * 69 + "a…"),
    ("\x1b]0;" + "x" * 10**6, "…"),  # one unterminated escape sequence: nothing of it shows
    ("x" * 138 + "\x1b[31m" * 10**5, "x" * 138 + "…"),
])
def test_a_megabyte_value_from_a_plan_file_shows_its_inert_beginning(name: str, shown: str) -> None:
    plan = many(2)
    plan = replace(plan, functions=tuple(replace(fp, desired=replace(fp.desired, name=name)) for fp in plan.functions))
    md = markdown(plan)
    assert_whole_and_inert(plan, md)
    in_table, in_details = shown_functions(md)
    assert in_table == in_details == [shown]
