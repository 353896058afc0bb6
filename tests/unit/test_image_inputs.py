"""Each input of an image digested on its own: a change to one shared module changes that input's
digest and no other; the plan's layout and apply's assembled directory agree on every one; labels
from a registry are taken only in the forms deployer writes; an explanation survives a plan file
and a damaged one is refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from deployer import image_inputs
from deployer.context import assemble
from deployer.image_inputs import Explanation, FileChange, FileChanges, InputChange, compare, explain, from_labels
from deployer.layout import layout
from deployer.registry import REVISION_LABEL
from tests.unit.context_helpers import pinned_fn, write_tree

GO_MOD = (b"module example.com/functions/fn\n\ngo 1.22\n\nrequire (\n\texample.com/shared/errors v0.0.0\n"
          b"\texample.com/shared/logger v0.0.0\n)\n\nreplace (\n\texample.com/shared/errors => ../../shared/errors\n"
          b"\texample.com/shared/logger => ../../shared/logger\n)\n")
REPO = {
    "functions/fn/go.mod": GO_MOD,
    "functions/fn/main.go": b"package main\n\nfunc main() {}\n",
    "shared/errors/go.mod": b"module example.com/shared/errors\n",
    "shared/errors/errors.go": b"package errors\n",
    "shared/logger/go.mod": b"module example.com/shared/logger\n",
    "shared/logger/logger.go": b"package logger\n",
}
COMMIT = "1a2b3c4d" * 5


def inputs_of(root: Path, **build: Any) -> dict[str, str]:
    return layout(pinned_fn(root, **build)).digests()[1]


def changed_names(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def test_every_input_is_named_and_a_shared_module_by_its_path_in_the_repository(tmp_path: Path) -> None:
    assert sorted(inputs_of(write_tree(tmp_path, REPO))) == [
        "base-images", "build-settings", "dockerfile", "function", "module/shared/errors", "module/shared/logger"]


@pytest.mark.parametrize(("edit", "build", "changed"), [
    ({"shared/errors/errors.go": b"package errors\n\nvar X = 1\n"}, {}, {"module/shared/errors"}),
    ({"functions/fn/main.go": b"package main\n\nfunc main() { println() }\n"}, {}, {"function"}),
    ({}, {"runtime_image": "rt:other"}, {"base-images"}),
    ({}, {"go_build_flags": ("-trimpath", "-v")}, {"build-settings"}),
])
def test_one_changed_input_changes_its_own_digest_only(tmp_path: Path, edit: dict[str, bytes], build: dict[str, Any],
                                                      changed: set[str]) -> None:
    before = inputs_of(write_tree(tmp_path, REPO))
    after = inputs_of(write_tree(tmp_path, edit), **build)
    assert changed_names(before, after) == changed


def test_the_platform_changes_the_build_settings(tmp_path: Path) -> None:
    root = write_tree(tmp_path, REPO)
    arm = layout(pinned_fn(root)).digests()[1]
    amd = layout(dataclasses.replace(pinned_fn(root), platform="linux/amd64")).digests()[1]
    assert changed_names(arm, amd) == {"build-settings"}


def test_a_dockerfile_in_the_function_is_the_dockerfile_input_not_the_function_code(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {**REPO, "functions/fn/Dockerfile": b"FROM scratch\n"})
    before = inputs_of(root, dockerfile=root / "functions/fn/Dockerfile")
    after = inputs_of(write_tree(tmp_path, {"functions/fn/Dockerfile": b"FROM scratch\nLABEL a=b\n"}),
                      dockerfile=root / "functions/fn/Dockerfile")
    assert changed_names(before, after) == {"dockerfile"}


def test_the_assembled_directory_gives_the_digests_the_layout_gives(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "repo", REPO)
    fn = pinned_fn(root)
    digest, inputs = layout(fn).digests()
    context = assemble(fn, tmp_path / "ctx")
    assert (context.digest, dict(context.inputs)) == (digest, inputs)


def test_labels_round_trip_and_foreign_forms_are_dropped() -> None:
    inputs = {"function": "sha256:" + "a" * 64, "module/shared/errors": "sha256:" + "b" * 64}
    found = {**image_inputs.labels(inputs),
             "dev.deployer.input.module/\x1b]0;x\x07": "sha256:" + "c" * 64,  # a control character in the name
             # words that would pass for the explanation's own, and unprintable or invisible characters
             "dev.deployer.input.module/x removed; function code unchanged": "sha256:" + "c" * 64,
             "dev.deployer.input.module/x,y": "sha256:" + "c" * 64,
             "dev.deployer.input.module/a\u202eb": "sha256:" + "c" * 64,
             "dev.deployer.input.module/a\x9bb": "sha256:" + "c" * 64,
             "dev.deployer.input.module/" + "m" * 201: "sha256:" + "c" * 64,
             "dev.deployer.input.module/": "sha256:" + "c" * 64,
             "dev.deployer.input.anything": "sha256:" + "d" * 64,  # not an input deployer writes
             "dev.deployer.input.dockerfile": "sha256:short",  # not a digest
             "other.label": "x"}
    assert from_labels(found) == inputs
    assert from_labels({"other.label": "x"}) is None
    flood = {f"dev.deployer.input.module/m{i}": "sha256:" + "e" * 64 for i in range(image_inputs.MAX_INPUTS + 1)}
    assert from_labels(flood) is None


def test_compare_orders_the_function_then_its_modules_then_the_rest() -> None:
    d = {"function": "sha256:1", "module/b": "sha256:2", "module/a": "sha256:3", "base-images": "sha256:4", "dockerfile": "sha256:5"}
    r = {"function": "sha256:1", "module/b": "sha256:0", "module/c": "sha256:3", "base-images": "sha256:4", "dockerfile": "sha256:5"}
    changed, unchanged = compare(d, r)
    assert changed == (InputChange("module/a", "added"), InputChange("module/b", "changed"), InputChange("module/c", "removed"))
    assert unchanged == ("function", "dockerfile", "base-images")


def test_an_image_without_input_labels_is_told_as_unlabelled_with_no_commit() -> None:
    assert explain({"function": "sha256:" + "a" * 64}, {REVISION_LABEL: COMMIT}, REVISION_LABEL) == Explanation(labelled=False)


def test_the_commit_label_is_taken_only_in_the_form_of_a_commit_id() -> None:
    inputs = {"function": "sha256:" + "a" * 64}
    found = {**image_inputs.labels(inputs), REVISION_LABEL: "main; rm -rf /", image_inputs.DIRTY_LABEL: "true"}
    assert explain(inputs, found, REVISION_LABEL) == Explanation(labelled=True, unchanged=("function",), dirty=True)


@pytest.mark.parametrize(("label", "dirty"), [("true", True), ("unknown", None), ("false", False), ("TRUE", False), (None, False)])
def test_the_dirty_label_says_dirty_unknown_or_nothing(label: str | None, dirty: bool | None) -> None:
    inputs = {"function": "sha256:" + "a" * 64}
    found = {**image_inputs.labels(inputs), REVISION_LABEL: COMMIT, **({image_inputs.DIRTY_LABEL: label} if label else {})}
    assert explain(inputs, found, REVISION_LABEL).dirty is dirty
    round_trip = image_inputs.from_dict(json.loads(json.dumps(image_inputs.to_dict(explain(inputs, found, REVISION_LABEL)))), "x")
    assert round_trip is not None and round_trip.dirty is dirty


EXPLANATION = Explanation(labelled=True, changed=(InputChange("module/shared/errors", "changed"),), unchanged=("function",),
                          commit=COMMIT, dirty=True,
                          files=FileChanges((FileChange("shared/errors/errors.go", 3, 1, old_size=10, new_size=20),
                                             FileChange("shared/errors/blob.bin", binary=True, old_size=None, new_size=4),
                                             FileChange("shared/errors/b.go", old_size=5, new_size=5, renamed_from="shared/errors/a.go")),
                                            7))


def test_an_explanation_survives_a_plan_file() -> None:
    data = json.loads(json.dumps(image_inputs.to_dict(EXPLANATION)))
    assert image_inputs.from_dict(data, "x") == EXPLANATION
    assert image_inputs.from_dict(None, "x") is None


@pytest.mark.parametrize("damage", [
    lambda d: d.update(extra=1),
    lambda d: d.update(labelled="yes"),
    lambda d: d.update(commit="HEAD"),
    lambda d: d["changed"].append({"name": "module/\x07", "change": "changed"}),
    lambda d: d["changed"].append({"name": "function", "change": "rewritten"}),
    lambda d: d["files"].update(total=1),
    lambda d: d["files"]["files"][0].update(added=-1),
    lambda d: d["files"]["files"][0].update(path="a\nb"),
    lambda d: d["files"]["files"][2].update(renamed_from="a\x1b[2Jb"),
    lambda d: d["files"]["files"][2].update(renamed_from=""),
    lambda d: d["files"]["files"][2].pop("renamed_from"),
    lambda d: d["files"]["files"][2].update(renamed_from=d["files"]["files"][2]["path"]),
    lambda d: d["files"]["files"][2].update(added=1),
    lambda d: d["files"]["files"][2].update(old_size=None),
    lambda d: d["files"]["files"][2].update(renamed_from=7),
    lambda d: d["files"]["files"][0].update(old_size=True),
    lambda d: d["files"].update(total=10 ** 4000),
    lambda d: d["files"]["files"][0].update(deleted=10 ** 4000),
    lambda d: d["files"]["files"][0].update(new_size=2 ** 64),
    lambda d: d.update(unchanged=["function"] * (image_inputs.MAX_INPUTS + 1)),
])
def test_a_damaged_explanation_is_refused(damage: Any) -> None:
    data = json.loads(json.dumps(image_inputs.to_dict(EXPLANATION)))
    damage(data)
    with pytest.raises((ValueError, TypeError)):
        image_inputs.from_dict(data, "functions[0].explanation")
