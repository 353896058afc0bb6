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

from deployer.plan import Plan, SourceFile
from deployer.render import render
from tests.unit import test_plan

GOLDEN = Path(__file__).parent / "golden"


def every_case() -> Plan:
    return replace(test_plan.every_case(), sources=(SourceFile("deploy.yaml", "d" * 64),))


@pytest.mark.parametrize(("fmt", "suffix"), [("text", "txt"), ("markdown", "md"), ("json", "json")])
def test_rendered_plan_matches_its_golden_file(fmt: str, suffix: str) -> None:
    rendered = render(every_case(), fmt)
    golden = GOLDEN / f"plan.{suffix}"
    if os.environ.get("DEPLOYER_UPDATE_GOLDEN"):
        golden.write_text(rendered, encoding="utf-8")
    assert rendered == golden.read_text(encoding="utf-8")
