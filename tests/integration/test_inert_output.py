"""Output is data, never markup, through the real CLI: hostile values that really reach `plan` from
the local cloud and the file system show as themselves in markdown and text.

- an ECR image whose manifest media type (as DescribeImages reports it) holds an OSC and an ANSI
  escape sequence, HTML that would close the `<details>` section, a backtick and a pipe: the plan
  blocks the function and quotes the media type in its reason;
- a deploy.yaml in a directory whose name holds a backtick, `|`, `<b>`, `<img ...>`, `&` and an
  escape sequence: markdown shows it in "declared in".
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest
from ruamel.yaml import YAML

from deployer.render import terminal_text
from tests.conftest import ImageFunction
from tests.integration.conftest import Monorepo
from tests.unit.test_render import ALLOWED_ELEMENTS, CONTROL, content, render_html

pytestmark = pytest.mark.integration

HOSTILE_DIR = "spec `x` | <b>bold <img src=x onerror=alert(1)> & \x1b]0;owned\x07"  # no "/": a file name
# Printable markup only: a media type with control characters or line breaks is not even shown
# (the gateway drops it: tests/unit/test_aws_gateway.py); markup in one that is shown stays inert.
HOSTILE_MEDIA_TYPE = ("application/vnd.evil</details><img src=x onerror=alert(1)>"
                      "`code` | *x* [bold]y[/bold] # heading")


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout!r}\n--- stderr ---\n{result.stderr}"


def write_spec(monorepo: Monorepo, function: ImageFunction) -> Path:
    spec_dir = monorepo.root / HOSTILE_DIR
    spec_dir.mkdir()
    data = {"version": 1, "defaults": {"region": "us-east-1"}, "functions": [{
        "name": function.name, "repository": function.repository, "platform": "linux/arm64",
        "build": {"source": "../functions/finalize-with-error", "builder_image": monorepo.env["DEPLOYER_STANDIN_BUILDER"],
                  "runtime_image": monorepo.env["DEPLOYER_STANDIN_RUNTIME_ARM64"], "go_env": {"GOPROXY": "off"}}}]}
    with (spec_dir / "deploy.yaml").open("w") as out:
        YAML().dump(data, out)
    return spec_dir / "deploy.yaml"


def test_plan_shows_hostile_media_type_and_path_as_data_in_markdown_and_text(
        monorepo: Monorepo, make_image_function: Callable[..., ImageFunction], ecr_client: Any) -> None:
    function = make_image_function("arm64")
    write_spec(monorepo, function)
    planned = monorepo.deployer("plan", "--format", "json")
    assert planned.returncode == 0, output(planned)
    entry = json.loads(planned.stdout)["functions"][0]
    spec_file, tag = entry["desired"]["spec_file"], entry["desired"]["content_tag"]
    assert repr(HOSTILE_DIR)[1:-1] in spec_file  # paths are shown with control characters escaped
    # An image under the content tag with a hostile media type, as ECR would report it.
    manifest = json.dumps({"schemaVersion": 2, "mediaType": HOSTILE_MEDIA_TYPE, "config": {}, "layers": []})
    ecr_client.put_image(repositoryName=function.repository, imageManifest=manifest, imageManifestMediaType=HOSTILE_MEDIA_TYPE,
                         imageTag=tag)
    reason = (f"ECR tag {tag} is a {HOSTILE_MEDIA_TYPE}; Lambda accepts only single-platform image manifests; delete the "
              "tag and push a single-platform image (no provenance/SBOM attestations)")

    md = monorepo.deployer("plan", "--format", "markdown")
    text = monorepo.deployer("plan")

    for result in (md, text):
        assert result.returncode == 1, output(result)  # blocked
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr, output(result)
    root = render_html(md.stdout)
    assert {element.tag for element in root.iter()} <= ALLOWED_ELEMENTS, md.stdout
    rows = root.findall(".//tr")
    assert [len(row) for row in rows] == [6, 6], md.stdout
    assert content(rows[1][5]).strip() == terminal_text(reason)
    (details,) = root.findall("details")
    items = [content(li) for li in details.iter("li")]
    assert f"declared in: {terminal_text(spec_file)}" in items, md.stdout
    assert f"reason: {terminal_text(reason)}" in items, md.stdout
    assert md.stdout.count("<details>") == md.stdout.count("</details>") == 1
    assert re.sub(r"</?(details|summary|code)>", "", md.stdout).count("<") == 0, md.stdout
    assert not CONTROL.search(md.stdout), output(md)

    assert not CONTROL.search(text.stdout), output(text)
    assert f"    reason:  {terminal_text(reason)}\n" in text.stdout, output(text)  # rich markup of the value kept as text
