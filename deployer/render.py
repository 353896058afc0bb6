"""render: Plan -> text (terminals), markdown (pull-request comments) or json.

Text uses rich markup; the console decides whether to emit colour (only on a TTY, never with
NO_COLOR). Markdown is plain GitHub-flavoured markdown with the details collapsed.
"""

from __future__ import annotations

from deployer import planfile
from deployer.plan import Action, FunctionPlan, Plan, short

_STYLE = {Action.NOOP: "dim", Action.UPDATE: "yellow", Action.BUILD: "green", Action.BLOCKED: "bold red"}


def render(plan: Plan, fmt: str) -> str:
    if fmt == "json":
        return planfile.to_json(plan)
    if fmt == "markdown":
        return markdown(plan)
    return text(plan)


def summary(plan: Plan) -> str:
    counts = plan.counts()
    parts = [f"{counts[a]} {a.value}" for a in (Action.BUILD, Action.UPDATE, Action.NOOP, Action.BLOCKED) if counts[a]]
    return f"Plan: {len(plan.functions)} function(s): " + ", ".join(parts or ["nothing to do"])


def text(plan: Plan) -> str:
    """Rich markup; every value from outside is escaped."""
    from rich.markup import escape

    lines = []
    for fp in plan.functions:
        style = _STYLE[fp.action]
        lines.append(f"[{style}]{escape(fp.action.symbol)} {escape(fp.name)}: {fp.action.value}[/{style}]")
        lines.append(f"    reason:  {escape(fp.reason)}")
        if fp.action is not Action.BLOCKED:
            lines.append(f"    image:   {escape(fp.desired.repository_uri)}:{escape(fp.desired.content_tag)}")
            lines.append(f"    digest:  {_digest_change(fp)}")
            lines.append(f"    arch:    {_arch_change(fp)}")
        for number, step in enumerate(fp.steps, 1):
            lines.append(f"    {number}. {escape(step.describe())}")
        lines.append("")
    lines.append(summary(plan))
    return "\n".join(lines) + "\n"


def _digest_change(fp: FunctionPlan) -> str:
    if fp.action is Action.NOOP:
        return f"{short(fp.current_digest)} (unchanged)"
    desired = short(fp.desired_digest) if fp.desired_digest else "(digest known after build)"
    return f"{short(fp.current_digest)} -> {desired}"


def _arch_change(fp: FunctionPlan) -> str:
    current = ",".join(fp.current_architectures) or "-"
    if (fp.desired.architecture,) == fp.current_architectures:
        return f"{current} (unchanged)"
    return f"{current} -> {fp.desired.architecture}"


def markdown(plan: Plan) -> str:
    lines = ["### deployer plan", "", summary(plan), "",
             "| | Function | Current digest | Desired digest | Action | Reason |",
             "|---|---|---|---|---|---|"]
    for fp in plan.functions:
        desired = f"`{short(fp.desired_digest)}`" if fp.desired_digest else "_after build_"
        lines.append(f"| `{fp.action.symbol.strip() or '='}` | `{fp.name}` | `{short(fp.current_digest)}` | {desired} "
                     f"| {fp.action.value} | {_cell(fp.reason)} |")
    lines.append("")
    for fp in plan.functions:
        lines += ["<details>", f"<summary><code>{fp.name}</code>: {fp.action.value}</summary>", "",
                  f"- reason: {_cell(fp.reason)}",
                  f"- image: `{fp.desired.repository_uri}:{fp.desired.content_tag}`",
                  f"- source digest: `{fp.desired.source_digest}`",
                  f"- current digest: `{fp.current_digest or '-'}`",
                  f"- architectures: {_arch_change(fp)}",
                  f"- declared in: `{fp.desired.spec_file}`"]
        if fp.steps:
            lines += ["", *(f"{n}. {step.describe()}" for n, step in enumerate(fp.steps, 1))]
        lines += ["", "</details>", ""]
    return "\n".join(lines)


def _cell(value: str) -> str:
    """Table cells: a pipe would end the cell."""
    return value.replace("|", "\\|").replace("\n", " ")
