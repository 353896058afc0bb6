"""The wording of plans, pinned once per format: every planner case of plan_cases/ rendered as
text, markdown and JSON, compared with the files in golden/. The planner and the integration
tests speak in reason codes; only these files say what users read.

After an intended change of wording, regenerate with DEPLOYER_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from deployer.image_inputs import Explanation, FileChange, FileChanges, InputChange
from deployer.plan import Action, Plan, SourceFile
from deployer.render import render
from tests.unit import test_plan

GOLDEN = Path(__file__).parent / "golden"


# Explanations of image changes (deployer.provenance), in each form they take: inputs and files,
# a commit missing from the local history, built with uncommitted changes or maybe with some, an
# image without deployer's labels, unreadable labels.
EXPLANATIONS = (
    Explanation(labelled=True, changed=(InputChange("module/shared/errors", "changed"), InputChange("module/shared/new", "added")),
                unchanged=("function", "dockerfile", "build-settings", "base-images"), commit="1a2b3c4d" * 5,
                files=FileChanges((FileChange("shared/errors/errors.go", 12, 3, old_size=400, new_size=700),
                                   FileChange("shared/errors/wrap.go", old_size=90, new_size=90,
                                              renamed_from="shared/errors/wrapping.go"),
                                   FileChange("shared/new/go.mod", 3, 0, old_size=None, new_size=40),
                                   FileChange("shared/new/logo.png", binary=True, old_size=None, new_size=2048),
                                   FileChange("shared/new/logo@2x.png", binary=True, old_size=4096, new_size=4096,
                                              renamed_from="shared/errors/logo@2x.png")), 5)),
    Explanation(labelled=True, changed=(InputChange("function", "changed"),), unchanged=("dockerfile",), commit="9" * 40, dirty=True),
    Explanation(labelled=True, changed=(InputChange("build-settings", "changed"),), unchanged=("function",), commit="8" * 40,
                dirty=None),
    Explanation(labelled=False),
    Explanation(labelled=False, unreadable=True),
)


def every_case() -> Plan:
    plan = replace(test_plan.every_case(), sources=(SourceFile("deploy.yaml", "d" * 64),))
    changing = [fp.name for fp in plan.functions if fp.action in (Action.BUILD, Action.UPDATE) and fp.current_digest]
    explained = dict(zip(changing, EXPLANATIONS))
    return replace(plan, functions=tuple(replace(fp, explanation=explained.get(fp.name)) for fp in plan.functions))


def test_every_form_of_explanation_is_rendered() -> None:
    assert sum(fp.explanation is not None for fp in every_case().functions) == len(EXPLANATIONS)


@pytest.mark.parametrize(("fmt", "suffix"), [("text", "txt"), ("markdown", "md"), ("json", "json")])
def test_rendered_plan_matches_its_golden_file(fmt: str, suffix: str) -> None:
    rendered = render(every_case(), fmt)
    golden = GOLDEN / f"plan.{suffix}"
    if os.environ.get("DEPLOYER_UPDATE_GOLDEN"):
        golden.write_text(rendered, encoding="utf-8")
    assert rendered == golden.read_text(encoding="utf-8")
