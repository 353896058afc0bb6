"""Output is data, never markup: hostile values from every source (AWS fields, paths, deploy.yaml and
plan-file values) leave the markdown structure intact and show as themselves, and reach a terminal
without control characters or escape sequences.

Markdown is checked by rendering it with markdown-it-py (CommonMark with GFM tables and raw HTML,
as GitHub renders a comment; it comes with rich) and reading the HTML back as XML: a value that
broke out would add elements, cells or rows, or make the HTML unreadable.
"""

from __future__ import annotations

import io
import re
import string
import xml.etree.ElementTree as ET
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest
from markdown_it import MarkdownIt
from rich.console import Console

from deployer import explain
from deployer.function_config import EnvValue, FunctionConfig, ObservedConfig
from deployer.outcome import Outcome, OutcomeStatus
from deployer.plan import Action, FunctionPlan, Plan, Reason, ReasonCode, make_plan, plan_function, short
from deployer.progress import ConsoleReporter
from deployer.render import html_code, markdown, md_code, md_text, terminal_lines, terminal_text, text
from deployer.spec import EcrRepository
from deployer.state import Desired, FunctionState, ImageState, Observed

REPO = "123456789012.dkr.ecr.us-east-1.amazonaws.com/fn-repo"
SOURCE = "sha256:" + "a" * 64
OLD = "b" * 64
NEW = "c" * 64
V2 = "application/vnd.docker.distribution.manifest.v2+json"

REPOSITORY = EcrRepository("123456789012", "us-east-1", "fn-repo")
DESIRED = Desired(name="fn", region="us-east-1", repository=REPOSITORY, content_tag="src-" + "a" * 40, source_digest=SOURCE,
                  architecture="arm64", platform="linux/arm64", spec_file="functions/fn/deploy.yaml")
RUNNING = FunctionState(exists=True, package_type="Image", code_sha256=OLD, architectures=("arm64",))
IMAGE = ImageState(repository_exists=True, digest=f"sha256:{NEW}", media_type=V2)

# What a hostile pull request or account can put in a value.
HOSTILE = {
    "html": "</details><img src=x onerror=alert(1)><details><summary>x</summary>",
    "script": "<script>alert(document.cookie)</script>",
    "code span": "``</code>` <b>bold</b> `x`",
    "table": "a | b | c\\|d",
    "inline markdown": "*em* _u_ **b** [link](https://evil.example) ![i](x) ~~s~~ $x$ &amp; &#60; \\*",
    "lines": "first\n\n</details>\n\n# heading\n| x | y |\n|---|---|\n| 1 | 2 |\n- item\r\n",
    "terminal": "\x1b]0;owned\x07\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\\x1b[31mred\x1b[0m\x1b[2J\x9b2J\x9d0;t\x9c\x07\x08\x00\x7f",
    "bidi": "user\u202etxt.exe\u2066x\u2069",
    "ci command": "\n::error title=Deploy approved::all checks passed\n::add-mask::x\n##[error]forged",
}

ALLOWED_ELEMENTS = {"root", "h3", "p", "em", "table", "thead", "tbody", "tr", "th", "td", "code", "details", "summary", "ul", "ol", "li"}
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def render_html(md: str) -> ET.Element:
    """GitHub's view of `md`, as an element tree (fails if the HTML is not well formed)."""
    html = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(md)
    return ET.fromstring(f"<root>{html}</root>")


def content(element: ET.Element) -> str:
    return "".join(element.itertext())


def fp_with(fp: FunctionPlan, **desired: Any) -> FunctionPlan:
    return replace(fp, desired=replace(fp.desired, **desired))


def plans_with(value: str) -> dict[str, Plan]:
    """One plan per source the value can come from, each with a plain function beside it."""
    plain = plan_function(replace(DESIRED, name="aaa-plain"), Observed(RUNNING, IMAGE))
    failed = replace(RUNNING, last_update_status="Failed", last_update_reason=value)
    plans = {
        "LastUpdateStatusReason": plan_function(DESIRED, Observed(failed, IMAGE)),
        "ECR media type": plan_function(DESIRED, Observed(RUNNING, replace(IMAGE, media_type=value))),
        "CodeSha256": plan_function(DESIRED, Observed(replace(RUNNING, code_sha256=value), IMAGE)),
        "imageDigest": plan_function(DESIRED, Observed(RUNNING, replace(IMAGE, digest=value))),
        "Architectures": plan_function(DESIRED, Observed(replace(RUNNING, architectures=(value,)), IMAGE)),
        "spec_file path": fp_with(plan_function(DESIRED, Observed(RUNNING, ImageState(True))), spec_file=f"dir{value}/deploy.yaml"),
        # Function names and repositories are schema-limited in deploy.yaml, not in a plan file.
        "plan file: name": fp_with(plan_function(DESIRED, Observed(RUNNING, IMAGE)), name=value),
        "plan file: repository": plan_function(replace(DESIRED, repository=replace(REPOSITORY, name=f"fn-repo{value}")), Observed(RUNNING, ImageState(True))),
        "plan file: reason": replace(plan_function(DESIRED, Observed(RUNNING, IMAGE)), reason=Reason(ReasonCode.LAST_UPDATE_FAILED, value)),
        # Configuration: a literal of deploy.yaml is shown (the schema bounds its length, not its
        # characters); so are Lambda's description and role, whatever the account holds.
        "deploy.yaml: environment literal": plan_function(
            replace(DESIRED, config=FunctionConfig(environment=MappingProxyType({"MODE": EnvValue(value)}))), Observed(RUNNING, IMAGE)),
        "Lambda's description": plan_function(
            replace(DESIRED, config=FunctionConfig(description="declared")),
            Observed(replace(RUNNING, config=ObservedConfig(description=value)), IMAGE)),
        "Lambda's role, configuration only": plan_function(
            replace(DESIRED, config=FunctionConfig(role="arn:aws:iam::123456789012:role/r")),
            Observed(replace(RUNNING, code_sha256=NEW, config=ObservedConfig(role=value)), IMAGE)),
    }
    return {source: Plan((plain, fp)) for source, fp in plans.items()}


CASES = [pytest.param(source, value, id=f"{source}-{kind}") for kind, value in HOSTILE.items()
         for source in plans_with("x")]


@pytest.mark.parametrize("source,value", CASES)
def test_markdown_structure_survives_hostile_value_and_shows_it_as_written(source: str, value: str) -> None:
    plan = plans_with(value)[source]
    md = markdown(plan)
    root = render_html(md)

    assert {element.tag for element in root.iter()} <= ALLOWED_ELEMENTS, md
    rows = root.findall(".//tr")
    assert len(rows) == 1 + len(plan.functions), md
    assert [len(row) for row in rows] == [6] * len(rows), md
    details = root.findall("details")
    assert len(details) == len(plan.functions), md
    assert [len(d.findall("summary")) for d in details] == [1] * len(details), md
    assert md.count("<details>") == md.count("</details>") == len(plan.functions)
    assert not CONTROL.search(md)
    # Only the renderer's own tags: every `<` of a value is a reference.
    assert re.sub(r"</?(details|summary|code)>", "", md).count("<") == 0, md

    hostile = plan.functions[1]  # rendered in the plan's order: after the plain one
    cells = [content(cell) for cell in rows[2]]
    assert cells[1] == terminal_text(hostile.name)
    assert cells[2] == terminal_text(short(hostile.current_digest))
    assert cells[5].strip() == terminal_text(explain.reason(hostile)).strip()
    items = [content(li) for li in details[1].iter("li")]
    assert f"declared in: {terminal_text(hostile.desired.spec_file)}" in items
    for change in hostile.configuration:  # one nested item each, the value as itself
        assert terminal_text(explain.change_line(change)) in items, (items, md)
    assert f"image: {terminal_text(hostile.desired.repository_uri)}:{hostile.desired.content_tag}" in items
    assert any(item.strip() == f"reason: {terminal_text(explain.reason(hostile))}".strip() for item in items)


def test_the_configuration_sources_do_change_the_configuration() -> None:
    plans = plans_with(HOSTILE["html"])
    for source in ("deploy.yaml: environment literal", "Lambda's description", "Lambda's role, configuration only"):
        assert plans[source].functions[1].configuration, source
    assert plans["Lambda's role, configuration only"].functions[1].action is Action.CONFIGURE


def test_a_hostile_literal_shows_inert_in_the_configuration_lines() -> None:
    value = "a\x1b]0;owned\x07\n::error::forged\r\n</details><b>x</b> | `y` [bold]z[/bold]"
    fp = plan_function(replace(DESIRED, config=FunctionConfig(environment=MappingProxyType({"MODE": EnvValue(value)}))),
                       Observed(RUNNING, IMAGE))
    plan = Plan((fp,))
    shown = text(plan)
    assert "      + environment.MODE: a ::error::forged </details><b>x</b> | `y` \\[bold]z\\[/bold]\n" in shown, shown
    md = markdown(plan)
    [item] = [li for li in render_html(md).iter("li") if content(li).startswith("+ environment.MODE")]
    assert content(item) == "+ environment.MODE: a ::error::forged </details><b>x</b> | `y` [bold]z[/bold]"
    assert md.count("</details>") == 1 and not CONTROL.search(md)


@pytest.mark.parametrize("char", [c for c in string.punctuation + " " if c not in "\\"] + ["\\", "``", "&#96;", "&amp;"])
def test_every_punctuation_character_shows_as_itself_in_cell_list_item_and_summary(char: str) -> None:
    value = f"{char}a{char}b{char}"
    md = (f"| x |\n|---|\n| {md_code(value)} {md_text(value)} |\n\n- {md_code(value)} {md_text(value)}\n\n"
          f"<details>\n<summary>{html_code(value)} {md_text(value)}</summary>\n\n</details>\n")
    root = render_html(md)
    cell, item, summary = root.find(".//td"), root.find(".//li"), root.find(".//summary")
    assert cell is not None and item is not None and summary is not None, md
    for element in (cell, item, summary):
        assert [content(code) for code in element.iter("code")] == [value], md
        assert content(element).strip() == f"{value} {value}".strip(), md
        assert {e.tag for e in element.iter()} <= {"td", "li", "summary", "code"}, md


def test_identifiers_stay_readable_code_spans() -> None:
    assert md_code("sha256:0123456789ab") == "`sha256:0123456789ab`"
    assert md_code(f"{REPO}:src-abc") == f"`{REPO}:src-abc`"
    assert md_code("a`b") == "<code>a&#96;b</code>"
    assert md_code("") == "<code></code>"


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_text_render_has_no_control_characters_and_no_markup_from_values(kind: str) -> None:
    value = HOSTILE[kind] + " [bold]not bold[/bold] [link=https://evil.example]l[/link] \\"
    for source, plan in plans_with(value).items():
        rendered = text(plan)
        assert not CONTROL.search(rendered), (source, rendered)
        assert not [line for line in rendered.splitlines() if line.lstrip().startswith("::") or "##[" in line], (source, rendered)
        expected_lines = sum(2 + 3 * (fp.action is not Action.BLOCKED) + (1 + len(fp.configuration) if fp.configuration else 0)
                             + len(fp.steps) + 1 for fp in plan.functions) + 1
        assert rendered.count("\n") == expected_lines, (source, rendered)

        out = io.StringIO()
        Console(file=out, highlight=False, soft_wrap=True, emoji=False, force_terminal=True).print(rendered, end="")
        shown = out.getvalue()
        assert "\x1b]" not in shown and "\x07" not in shown and "\x1b[2J" not in shown, source
        # What is shown of the value is the value itself: its own markup is not interpreted.
        plain = re.sub(r"\x1b\[[0-9;]*m", "", shown)
        if source not in ("CodeSha256", "imageDigest", "spec_file path"):  # shortened, or not in text
            assert "[bold]not bold[/bold] [link=https://evil.example]l[/link]" in plain, (source, plain)


def test_terminal_text_removes_escape_sequences_whole_and_keeps_words_apart() -> None:
    assert terminal_text("a\x1b]0;title\x07b") == "ab"
    assert terminal_text("a\x1b]8;;https://x\x1b\\link\x1b]8;;\x1b\\b") == "alinkb"
    assert terminal_text("\x1b[1;31mred\x1b[0m \x9b2Jx") == "red x"
    assert terminal_text("\x1bP1$r\x1b\\ok\x1bc") == "ok"
    assert terminal_text("one\ntwo\r\nthree\tfour") == "one two three four"
    assert terminal_text("nul\x00 del\x7f c1\x85 bidi\u202e") == "nul del c1  bidi"
    assert terminal_text("ünïcode ✓ 日本") == "ünïcode ✓ 日本"
    assert terminal_lines("a\x1b[31m\nb\x1b]0;t\x07\n") == ["a", "b"]


def test_progress_lines_notices_and_summary_carry_no_control_characters_or_markup() -> None:
    out = io.StringIO()
    # Lines only: the live area (and its cursor movements) is tested in test_progress.
    reporter = ConsoleReporter(Console(file=out, highlight=False, soft_wrap=True, force_terminal=True), live=False)
    name = "fn\x1b[2J[bold]"
    reporter.step(name, 1, 2, "push \x1b]0;owned\x07 :smile: [red]x[/red]")
    reporter.step_done(name, 1, 2, "push", 1.0)
    reporter.log(name, "build \x1b]8;;https://evil\x1b\\line\x1b]8;;\x1b\\ \x00\x7f")
    reporter.notice("stopping \x9b2J")
    reporter.summary([Outcome(name, OutcomeStatus.FAILED, "docker build failed: \x1b[31mno\x1b[0m\n--- last build output ---\nStep 1\x08\n\u202eevil", 1.0)])
    shown = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # rich's own colours

    assert not CONTROL.search(shown.replace("\n", "")), repr(shown)
    assert "fn[bold] [1/2] push  :smile: [red]x[/red] ..." in shown
    assert "fn[bold] | build line " in shown
    assert "\n    --- last build output ---\n    Step 1\n    evil\n" in shown
    assert len(shown.splitlines()) == 4 + 2 + 4 + 1  # progress, blank + title, outcome of 4 lines, totals


def test_damaged_values_from_a_plan_file_render_without_raising() -> None:
    odd = make_plan([(replace(DESIRED, name="x"), Observed(RUNNING, ImageState(True, "sha256:" + "\x00" * 3, "\x1b")))])
    assert "<code>" in markdown(odd) or "`" in markdown(odd)
    assert not CONTROL.search(text(odd))


def test_progress_masks_credential_shaped_text_in_build_output_and_outcomes() -> None:
    out = io.StringIO()
    reporter = ConsoleReporter(Console(file=out, highlight=False, soft_wrap=True))
    reporter.log("fn", "go: fetching https://bot:hunter2-secret@goproxy.example/mod")
    reporter.summary([Outcome("fn", OutcomeStatus.FAILED, "push failed: Authorization: Basic QVdTOnNlY3JldA==", 1.0)])
    shown = out.getvalue()
    assert "hunter2" not in shown and "QVdTOnNlY3JldA" not in shown
    assert "https://bot:***@goproxy.example/mod" in shown and "Authorization: ***" in shown


def test_a_configuration_update_shows_the_digest_unchanged() -> None:
    fp = plan_function(replace(DESIRED, config=FunctionConfig(memory=512)), Observed(replace(RUNNING, code_sha256=NEW), IMAGE))
    assert fp.action is Action.CONFIGURE
    assert f"    digest:  {short('sha256:' + NEW)} (unchanged)\n" in text(Plan((fp,)))
