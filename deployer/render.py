"""render: Plan -> text (terminals), markdown (pull-request comments) or json.

Text uses rich markup; the console decides whether to emit colour (only on a TTY, never with
NO_COLOR). Markdown is plain GitHub-flavoured markdown with the details collapsed.

Output is data, never markup: every value the renderer did not write itself (function names,
reasons, which quote AWS's LastUpdateStatusReason and ECR media types, repository URIs, paths,
digests, steps; all of a plan read from a file) may come from a hostile pull request or account.
In text it loses its control characters and escape sequences (`terminal_text`) and is escaped for
rich markup; in markdown it is written so that it shows as itself (`md_text`, `md_code`).
"""

from __future__ import annotations

import re

from rich.markup import escape

from typing import Callable, Sequence

from deployer import planfile
from deployer.history import HistoryEntry
from deployer.explain import change_line, changed_file_lines, reason, release_line, why_line
from deployer.markdown_budget import BUDGET, ELLIPSIS, Budget, clip
from deployer.plan import Action, FunctionPlan, Plan, short

_STYLE = {Action.NOOP: "dim", Action.CONFIGURE: "yellow", Action.UPDATE: "yellow", Action.BUILD: "green", Action.CREATE: "green",
          Action.RELEASE: "yellow", Action.BLOCKED: "bold red"}


def render(plan: Plan, fmt: str, saved_plan: str | None = None) -> str:
    """`plan` in `fmt`; `saved_plan` names the JSON plan saved with it, which markdown points to
    when it has to leave details out."""
    if fmt == "json":
        return planfile.to_json(plan)
    if fmt == "markdown":
        return markdown(plan, saved_plan)
    return text(plan)


# The summary's words for each action, in its order, Terraform-style ("2 to create, 40 unchanged").
_COUNTED = ((Action.CREATE, "to create"), (Action.BUILD, "to build"), (Action.UPDATE, "to update"),
            (Action.CONFIGURE, "to configure"), (Action.RELEASE, "to release"), (Action.NOOP, "unchanged"), (Action.BLOCKED, "blocked"))


def summary(plan: Plan) -> str:
    """One line counting functions by action: `Plan: 1 to create, 2 to build, 40 unchanged`. The
    unchanged are always counted; the other actions when there are any."""
    if not plan.functions:
        return "Plan: no functions"
    counts = plan.counts()
    return "Plan: " + ", ".join(f"{counts[action]} {words}" for action, words in _COUNTED
                                if counts[action] or action is Action.NOOP)


def _account_words(plan: Plan, inert: Callable[[object], str]) -> str:
    """Where an environment's functions are: the account of the credentials the plan was made with."""
    return f" (AWS account {inert(_inert(plan.account, 12))})" if plan.account else ""


def text(plan: Plan) -> str:
    """Rich markup; every value from outside is stripped of control characters and escaped."""
    lines = [f"Environment: {rich_text(plan.environment)}{_account_words(plan, rich_text)}", ""] if plan.environment else []
    for fp in plan.functions:
        style = _STYLE[fp.action]
        lines.append(f"[{style}]{escape(fp.action.symbol)} {rich_text(fp.name)}: {fp.action.value}[/{style}]")
        lines.append(f"    reason:  {rich_text(reason(fp))}")
        why = why_line(fp)
        if why is not None:
            lines.append(f"    why:     {rich_text(why)}")
            lines += [f"      {rich_text(line)}" for line in changed_file_lines(fp)]
        if fp.action is not Action.BLOCKED:
            lines.append(f"    image:   {rich_text(fp.desired.repository_uri)}:{rich_text(fp.desired.content_tag)}")
            lines.append(f"    digest:  {rich_text(_digest_change(fp))}")
            lines.append(f"    arch:    {rich_text(_arch_change(fp))}")
        if fp.release is not None:
            lines.append(f"    release: {rich_text(release_line(fp.release))}")
        if fp.repository_changes:
            lines.append("    repository:")
            lines += [f"      {rich_text(change_line(change))}" for change in fp.repository_changes]
        if fp.configuration:
            lines.append("    config:")
            lines += [f"      {rich_text(change_line(change))}" for change in fp.configuration]
        for number, step in enumerate(fp.steps, 1):
            lines.append(f"    {number}. {rich_text(step.describe())}")
        lines.append("")
    lines.append(summary(plan))
    return "\n".join(lines) + "\n"


def _digest_change(fp: FunctionPlan) -> str:
    if fp.action in (Action.NOOP, Action.CONFIGURE):
        return f"{short(fp.current_digest)} (unchanged)"
    desired = short(fp.desired_digest) if fp.desired_digest else "(digest known after build)"
    return f"{short(fp.current_digest)} -> {desired}"


def _arch_change(fp: FunctionPlan) -> str:
    current = ",".join(fp.current_architectures) or "-"
    if (fp.desired.architecture,) == fp.current_architectures:
        return f"{current} (unchanged)"
    return f"{current} -> {fp.desired.architecture}"


# -- markdown: a pull-request comment -------------------------------------------------------------
#
# Laid out as: the summary line; a table of the changing functions (blocked ones included: they
# must be seen); the unchanged folded into one <details> holding their names; one collapsed
# <details> per changing function. It must stay under GitHub's comment limit (markdown_budget),
# so pieces are taken in order of worth: the summary line always, then the table rows (full rows
# when all fit, else a compact table of name and action), then the unchanged names (up to a
# share), then the functions' details, then the rest of the unchanged names; whatever is left out
# is counted in a note saying where the full plan is.

# Caps on one foreign value, in characters of its inert one-line form (terminal_text), applied
# before markdown escaping so that no cut falls in a character reference or a code span.
_NAME_CAP = 140  # Lambda names have at most 64 characters, ARNs 140: longer ones come from a plan file
_CELL_CAP = 500  # a table cell: a digest, the reason (deployer's longest are ~350; AWS's messages quoted in it can be longer)
_LINE_CAP = 2000  # one line of a function's details
_PATH_CAP = 200  # the saved plan's name in the notes

_TABLE_HEAD = "| | Function | Current digest | Desired digest | Action | Reason |\n|---|---|---|---|---|---|\n"
_COMPACT_HEAD = "| | Function | Action |\n|---|---|---|\n"


def markdown(plan: Plan, saved_plan: str | None = None) -> str:
    """GitHub-flavoured markdown for a pull-request comment, under GitHub's size limit (see above).
    `saved_plan` names the JSON plan saved beside it (`plan --out`), which the truncation notes
    point to. Values from outside go through md_text (prose) or md_code (identifiers), capped."""
    changing = [fp for fp in plan.functions if fp.action is not Action.NOOP]
    unchanged = [fp.name for fp in plan.functions if fp.action is Action.NOOP]
    where = _full_plan(saved_plan)
    budget = Budget()
    head = f"### {summary(plan)}\n\n"
    if plan.environment:  # under the summary line, which stays first
        head += f"Environment: {md_code(_inert(plan.environment, _NAME_CAP))}{_account_words(plan, md_code)}\n\n"  # capped: always spent
    budget.spend(head)
    # Room for the notes and the fold's frame at their longest (every count at its maximum; the
    # fold listing no name, its longest form): what they finally say is never longer.
    most = len(plan.functions)
    budget.spend(_table_note(most, most, compact=True, where=where) + _details_note(most, where) + _fold([], most, where))

    if changing:
        table = _table(changing, budget, where)
    else:
        table = ["No function changes.\n\n"] if plan.functions else []
        budget.spend("".join(table))
    # The unchanged names come before the details, up to an eighth of the comment (some 300
    # names): what the fold promises, without thousands of them starving the details; then the
    # details; then more names if room is left.
    names = [f"{md_code(_inert(name, _NAME_CAP))}, " for name in unchanged]
    listed = Budget(min(budget.room, BUDGET // 8)).prefix(names)
    budget.spend("".join(names[:listed]))
    details = [_details(fp) for fp in changing]
    kept = budget.prefix(details)
    listed += budget.prefix(names[listed:])
    fold = _fold(names[:listed], len(unchanged), where) if unchanged else ""
    return "".join([head, *table, fold, *details[:kept], _details_note(len(changing) - kept, where)])


def _table(changing: Sequence[FunctionPlan], budget: Budget, where: str) -> list[str]:
    """The changing functions' rows that fit, whole: full rows when all of them fit, else compact
    ones (name and action), cut at the end when even those do not; a note says what is not there."""
    rows = [_row(fp) for fp in changing]
    compact = not budget.fits([_TABLE_HEAD, *rows, "\n"])
    if compact:
        rows = [_compact_row(fp) for fp in changing]
    frame = _COMPACT_HEAD if compact else _TABLE_HEAD
    budget.spend(frame + "\n")
    shown = budget.prefix(rows)
    return [frame, *rows[:shown], "\n", _table_note(len(changing) - shown, len(changing), compact, where)]


def _row(fp: FunctionPlan) -> str:
    desired = md_code(_cell(short(fp.desired_digest))) if fp.desired_digest else "_after build_"
    return (f"| `{fp.action.symbol.strip() or '='}` | {md_code(_name(fp))} | {md_code(_cell(short(fp.current_digest)))} "
            f"| {desired} | {fp.action.value} | {md_text(_cell(_table_reason(fp)))} |\n")


def _table_reason(fp: FunctionPlan) -> str:
    """The reason a reviewer reads first: which inputs changed, when the running image records them."""
    why = why_line(fp)
    return why if why is not None and fp.explanation is not None and fp.explanation.labelled else reason(fp)


def _compact_row(fp: FunctionPlan) -> str:
    return f"| `{fp.action.symbol.strip() or '='}` | {md_code(_name(fp))} | {fp.action.value} |\n"


def _details(fp: FunctionPlan) -> str:
    """One function's collapsed section. <details> opens an HTML block that lasts until the blank
    line: the <summary> line is raw HTML, where markdown (code spans, backslash escapes) means
    nothing, hence html_code there."""
    return "".join(line + "\n" for line in ["<details>", f"<summary>{html_code(_name(fp))}: {fp.action.value}</summary>", "",
                                            *detail_lines(fp), "", "</details>", ""])


def detail_lines(fp: FunctionPlan) -> list[str]:
    """The markdown lines inside a function's <details>: one bullet per fact, nested bullets for
    the repository and configuration changes, then the numbered steps. Each line is whole and
    inert; more facts go in as more bullets here."""
    lines = [f"- reason: {md_text(_line(reason(fp)))}"]
    why = why_line(fp)
    if why is not None:
        lines.append(f"- why: {md_text(_line(why))}")
        lines += [f"  - {md_code(_line(line))}" for line in changed_file_lines(fp)]
    lines += [f"- image: {md_code(_line(f'{fp.desired.repository_uri}:{fp.desired.content_tag}'))}",
             f"- source digest: {md_code(_line(fp.desired.source_digest))}",
             f"- current digest: {md_code(_line(fp.current_digest or '-'))}",
             f"- architectures: {md_text(_line(_arch_change(fp)))}",
             f"- declared in: {md_code(_line(fp.desired.spec_file))}"]
    if fp.release is not None:
        lines.append(f"- release: {md_text(_line(release_line(fp.release)))}")
    if fp.repository_changes:
        lines += ["- repository:", *(f"  - {md_code(_line(change_line(change)))}" for change in fp.repository_changes)]
    if fp.configuration:
        lines += ["- configuration:", *(f"  - {md_code(_line(change_line(change)))}" for change in fp.configuration)]
    if fp.steps:
        lines += ["", *(f"{n}. {md_text(_line(step.describe()))}" for n, step in enumerate(fp.steps, 1))]
    return lines


def _fold(names: Sequence[str], count: int, where: str) -> str:
    """The unchanged functions: their count, and inside, the names that fit (`names` end in ", ")."""
    listed = "".join(names).removesuffix(", ")
    if len(names) < count:
        left = count - len(names)
        listed += f"{' and' if names else 'Not listed here:'} {left} more ({where})"
    return f"<details>\n<summary>{count} unchanged</summary>\n\n{listed}\n\n</details>\n\n"


def _table_note(left_out: int, changing: int, compact: bool, where: str) -> str:
    said = []
    if compact:
        said.append("This table shows names and actions only: with reasons and digests it would not fit in a comment.")
    if left_out:
        said.append(f"{left_out} of {changing} changing functions are not in this table, to stay under GitHub's "
                    f"comment limit; {where}.")
    return f"_{' '.join(said)}_\n\n" if said else ""


def _details_note(left_out: int, where: str) -> str:
    if not left_out:
        return ""
    return f"_The details of {left_out} function(s) are left out, to stay under GitHub's comment limit; {where}._\n"


def _full_plan(saved_plan: str | None) -> str:
    if saved_plan is not None:
        return f"the full plan is in {md_code(_inert(saved_plan, _PATH_CAP))}"
    return "for the full plan, run `deployer plan --out plan.json` (in CI: see the JSON plan artifact)"


def _name(fp: FunctionPlan) -> str:
    return _inert(fp.name, _NAME_CAP)


def _cell(value: str) -> str:
    return _inert(value, _CELL_CAP)


def _line(value: str) -> str:
    return _inert(value, _LINE_CAP)


def _inert(value: str, cap: int) -> str:
    """terminal_text(value), cut to `cap` characters (then markdown-escaped by the caller). Only
    a prefix of a huge value is made inert, for speed (a plan file can hold megabytes): inert
    forms are never much longer than the value, so the prefix's is the value's beginning; an
    escape sequence the cut splits is dropped whole."""
    raw = value[: cap * 8 + 64]
    text = terminal_text(raw)
    if len(raw) < len(value):  # cut: the ellipsis says so, however short the inert form came out
        return text[: cap - 1] + ELLIPSIS
    return clip(text, cap)


# -- foreign values, made inert ------------------------------------------------------------------

# Terminal escape sequences, removed whole (their parameters would otherwise be left as text):
# OSC (window title, hyperlinks, clipboard) up to BEL or ST, or to the end when unterminated;
# DCS, SOS, PM and APC strings up to ST; CSI (colours, cursor moves, erase); any other ESC
# sequence. Each in its 7-bit (ESC ...) and 8-bit (C1) form.
_ESCAPE_SEQUENCE = re.compile(
    r"(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?"
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|\x1b[ -/]*[0-~]?"
)
# Line and paragraph separators, and tabs: shown as a space, so that words stay apart.
_BREAKS = re.compile(r"[\t\n\v\f\r\x1c-\x1e\x85\u2028\u2029]+")
# Every other control character (C0, DEL, C1) and the bidirectional controls that reorder what a
# reader sees (Unicode TR9 embeddings, overrides and isolates, the implicit marks).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_text(value: object) -> str:
    """`value` as one line that is safe to show on a terminal or in a CI log: escape sequences
    removed whole, line breaks and tabs turned into a space, every other control character (C0,
    DEL, C1) and bidirectional control dropped, and no CI log command (`ci_inert`). Not escaped
    for rich markup: see `rich_text`."""
    text = _ESCAPE_SEQUENCE.sub("", str(value))
    return ci_inert(_CONTROLS.sub("", _BREAKS.sub(" ", text)))


# GitHub Actions reads a log line as a workflow command when, leading spaces aside, it starts
# with "::" (`::error::`, `::add-mask::`, `::stop-commands::`), and in its older form wherever
# "##[" stands in the line (`##[error]`). Values of a pull request (a directory named
# "::error::approved") must not forge one: both are broken up, visibly.
_LEGACY_COMMAND = "##["


def ci_inert(line: str) -> str:
    """`line` with no workflow command in it: "##[" becomes "# #[", a leading "::" ": :"."""
    line = line.replace(_LEGACY_COMMAND, "# #[")
    stripped = line.lstrip()
    if stripped.startswith("::"):
        line = line[: len(line) - len(stripped)] + ": :" + stripped[2:]
    return line


def terminal_lines(value: object) -> list[str]:
    """A multi-line `value` (an error with build output, say) as lines of `terminal_text`."""
    # Only "\n" ends a line: the messages deployer writes use it. Any other line break (\r,
    # U+0085, U+2028...) can only come from a foreign value, and is a space, as in terminal_text:
    # a value must never start a line of its own (a CI log reads "::error::..." lines as commands).
    text = _ESCAPE_SEQUENCE.sub("", str(value))
    return [ci_inert(terminal_text(line)) for line in text.removesuffix("\n").split("\n")] if text else []


def rich_text(value: object) -> str:
    """A foreign value inside rich markup: inert on the terminal, and no markup of its own."""
    return escape(terminal_text(value))


# ASCII punctuation that GitHub-flavoured markdown or HTML give a meaning inline.
_MD_SPECIAL = frozenset("\\`*_[]<>&|~$")
# What shows literally inside a code span in every place a code span can be (list item, table
# cell): no backtick, no `|`, no space, no line break; also nothing HTML-like.
_CODE_SPAN_SAFE = re.compile(r"[A-Za-z0-9._:/@+=,-]+")


def md_text(value: object) -> str:
    """`value` as literal text on one line of GitHub-flavoured markdown: in a paragraph, a list
    item, a table cell, or raw HTML (an HTML block such as `<summary>...</summary>`).

    GFM rules relied on:
    - A numeric character reference (`&#96;`) shows as its character, in markdown text and in
      raw HTML alike, and never counts as markdown structure (spec 6.2, "Entity and numeric
      character references"): `&#124;` does not end a table cell, `&#96;` opens no code span,
      `&#60;` starts no HTML tag, `&#42;` no emphasis, `&#91;` no link, `&#38;` no reference.
      So every character of _MD_SPECIAL is written as one. Backslash escapes would not do:
      inside an HTML block they are shown as written.
    - A line ending ends a table row, a blank line ends an HTML block, and a line beginning with
      `</details>`, `#` or `-` starts a block of its own: line breaks become a space (as in
      `terminal_text`, which also drops escape sequences and control characters), so a value
      never begins a line.
    What no escaping prevents: GitHub's autolinks (a bare `https://...` or `www.` becomes a link
    showing the same text) and, in prose only, its post-render filters (@mentions, #references,
    :emoji:), which skip code; identifiers therefore go in code (`md_code`).
    """
    return "".join(f"&#{ord(c)};" if c in _MD_SPECIAL else c for c in terminal_text(value))


def md_code(value: object) -> str:
    """`value` as inline code in markdown (not in raw HTML: see `html_code`).

    A code span shows its content literally (spec 6.1: no emphasis, HTML, reference or escape
    inside), but a backtick in the value would close it, GFM splits a table row at a `|` even
    inside one, and its edge spaces are trimmed. A value made only of letters, digits and
    `._:/@+=,-` has none of these problems and goes in backticks, readable in the raw comment;
    any other value goes in `<code>` with md_text's references, which renders the same."""
    text = terminal_text(value)
    if _CODE_SPAN_SAFE.fullmatch(text):
        return f"`{text}`"
    return html_code(text)


def html_code(value: object) -> str:
    """`value` in `<code>`: valid in markdown text, in a table cell and in raw HTML alike."""
    return f"<code>{md_text(value)}</code>"


def history_text(function: str, entries: Sequence[HistoryEntry], environment: str | None = None) -> str:
    """Versions as a table, newest first; every value from AWS or an image label made inert.
    Under a deploy.yaml environment, a first line names it."""
    head = f"Environment: {terminal_text(environment)}\n" if environment else ""
    return head + _history_rows(function, entries)


def _history_rows(function: str, entries: Sequence[HistoryEntry]) -> str:
    if not entries:
        return f"{terminal_text(function)}: no published versions\n"
    rows = [("VERSION", "DATE", "IMAGE", "SOURCE", "COMMIT", "ALIASES")]
    for e in entries:
        rows.append((e.version, (e.date or "-")[:19], short(e.image), short(e.source_digest) if e.source_digest else "-",
                     (e.commit or "-")[:12], ",".join(e.aliases) or "-"))
    cells = [[terminal_text(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(rows[0]))]
    return "".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n" for row in cells)
