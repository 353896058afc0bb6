"""The files of a function's inputs changed since a commit, as `git diff --stat COMMIT -- inputs`
counts them, read with dulwich (no git process in the product; the tests make their commits with
git). Only what the build context holds counts; a checkout that borrows objects from elsewhere is
not read; a remote's URL loses its credentials."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from deployer import explain, gitdiff, image_inputs
from deployer.image_inputs import FileChange, FileChanges
from deployer.context import assemble
from deployer.digest import disk_entries
from deployer.images import checkout_labels
from deployer.registry import REVISION_LABEL
from deployer.layout import layout
from tests.unit.context_helpers import pinned_fn, write_tree

GO_MOD = (b"module example.com/functions/fn\n\ngo 1.22\n\nrequire example.com/shared/errors v0.0.0\n\n"
          b"replace example.com/shared/errors => ../../shared/errors\n")
REPO = {
    "functions/fn/go.mod": GO_MOD,
    "functions/fn/main.go": b"package main\n\nfunc main() {}\n",
    "functions/fn/main_test.go": b"package main\n",
    "functions/fn/.dockerignore": b"notes.txt\n",
    "functions/fn/notes.txt": b"a\n",
    "functions/other/main.go": b"package main\n",
    "shared/errors/go.mod": b"module example.com/shared/errors\n",
    "shared/errors/errors.go": b"package errors\n\nvar A = 1\nvar B = 2\n",
}


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=root,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> tuple[Path, str]:
    root = write_tree(tmp_path / "repo", REPO)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "start")
    return root, git(root, "rev-parse", "HEAD")


def changes(root: Path, commit: str) -> FileChanges | None:
    repo = gitdiff.open_checkout(root)
    assert repo is not None
    lay = layout(pinned_fn(root))
    return gitdiff.changed_files(repo, root, commit, lay.input_dirs, lay.entries, would_hold=lay.would_hold)


def test_an_unchanged_checkout_has_no_changed_files_and_is_not_dirty(checkout: tuple[Path, str]) -> None:
    root, commit = checkout
    found = changes(root, commit)
    assert found is not None and (found.files, found.total) == ((), 0)


def test_modified_added_and_deleted_files_are_counted_as_git_diff_stat_counts_them(checkout: tuple[Path, str]) -> None:
    root, commit = checkout
    errors_go, util_go = b"package errors\n\nvar A = 1\nvar B = 3\nvar C = 4\n", b"package main\n\nfunc util() {}\n"
    write_tree(root, {"shared/errors/errors.go": errors_go, "functions/fn/util.go": util_go,
                      "shared/errors/data.bin": b"\x00\x01\x02"})
    (root / "functions/fn/main.go").unlink()
    found = changes(root, commit)
    assert found is not None and found.total == 4
    assert found.files == (
        FileChange("functions/fn/main.go", 0, 3, old_size=len(REPO["functions/fn/main.go"]), new_size=None),
        FileChange("functions/fn/util.go", 3, 0, old_size=None, new_size=len(util_go)),
        FileChange("shared/errors/data.bin", binary=True, old_size=None, new_size=3),
        FileChange("shared/errors/errors.go", 2, 1, old_size=len(REPO["shared/errors/errors.go"]), new_size=len(errors_go)),
    )
    stat = git(root, "diff", "--numstat", commit, "--", "shared/errors/errors.go")
    assert stat.split()[:2] == ["2", "1"]  # git's own count of the same change


def test_a_file_moved_with_its_content_is_one_rename_and_one_moved_and_edited_is_a_deletion_and_an_addition(
        checkout: tuple[Path, str]) -> None:
    root, commit = checkout
    (root / "shared/errors/errors.go").rename(root / "shared/errors/errs.go")
    (root / "functions/fn/main.go").rename(root / "functions/fn/entry.go")
    (root / "functions/fn/entry.go").write_bytes(REPO["functions/fn/main.go"] + b"// moved\n")
    found = changes(root, commit)
    size = len(REPO["shared/errors/errors.go"])
    assert found is not None and found.total == 3
    assert found.files == (
        FileChange("functions/fn/entry.go", 4, 0, old_size=None, new_size=len(REPO["functions/fn/main.go"]) + 9),
        FileChange("functions/fn/main.go", 0, 3, old_size=len(REPO["functions/fn/main.go"]), new_size=None),
        FileChange("shared/errors/errs.go", old_size=size, new_size=size, renamed_from="shared/errors/errors.go"),
    )
    git(root, "add", "-A")
    assert "shared/errors/{errors.go => errs.go} | 0" in git(root, "diff", "--cached", "--stat", "-M100%", commit)


SAME = b"package errors\n\nvar Same = 1\n"


def git_renames(root: Path, commit: str) -> dict[str, tuple[str | None, int, int]]:
    """git's own view of the checkout's changes in shared/errors with exact renames: new path ->
    (old path of a rename, added, deleted); a binary file's counts as -1."""
    git(root, "add", "-A")
    out = subprocess.run(["git", "diff", "--cached", "-M100%", "--numstat", "-z", commit, "--", "shared/errors"],
                         cwd=root, check=True, capture_output=True, text=True).stdout
    fields, found = out.split("\0"), {}
    while len(fields) > 1:
        added, deleted, path = fields.pop(0).split("\t")
        old = None
        if not path:
            old, path = fields.pop(0), fields.pop(0)
        found[path] = (old, -1 if added == "-" else int(added), -1 if deleted == "-" else int(deleted))
    return found


def ours(found: FileChanges | None) -> dict[str, tuple[str | None, int, int]]:
    assert found is not None
    return {f.path: (f.renamed_from, -1 if f.binary else f.added, -1 if f.binary else f.deleted) for f in found.files}


@pytest.mark.parametrize("scenario", ["two_identical_moves", "same_name_first", "symlink_is_no_rename", "binary", "empty_files"])
def test_exact_renames_are_paired_as_git_pairs_them(checkout: tuple[Path, str], scenario: str) -> None:
    root, _ = checkout
    d = root / "shared/errors"
    before = {"two_identical_moves": {"a/x.go": SAME, "b/y.go": SAME},
              "same_name_first": {"a/y.go": SAME, "b/x.go": SAME},
              "symlink_is_no_rename": {"target.txt": b"package errors"},
              "binary": {"d.bin": b"\0\1\2" * 100},
              "empty_files": {"e1.go": b"", "e2.go": b"", "keep.go": b""}}[scenario]
    write_tree(d, before)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", scenario)
    commit = git(root, "rev-parse", "HEAD")
    (d / "c").mkdir()
    if scenario == "two_identical_moves":
        (d / "a/x.go").rename(d / "c/x.go")
        (d / "b/y.go").rename(d / "c/y.go")
    elif scenario == "same_name_first":
        (d / "a/y.go").unlink()
        (d / "b/x.go").rename(d / "c/x.go")
    elif scenario == "symlink_is_no_rename":
        (d / "target.txt").unlink()
        os.symlink("package errors", d / "link.go")
    elif scenario == "binary":
        (d / "d.bin").rename(d / "e.bin")
    else:
        (d / "e1.go").rename(d / "c/e1.go")
        (d / "e2.go").unlink()
    found = changes(root, commit)
    assert ours(found) == git_renames(root, commit)


@pytest.mark.parametrize(("old", "new"), [("shared/errors/wrapping.go", "shared/errors/wrap.go"), ("a/x/f.go", "b/x/f.go"),
                                          ("a.go", "b.go"), ("pkg/a/f.go", "pkg/b/f.go"), ("x/y.go", "x/y/z.go"),
                                          ("d/f.go", "d/g/f.go"), ("p/q/r.go", "s/t.go"), ("a/b/c.go", "a/c.go"),
                                          ("ab/c.go", "abd/c.go"), ("m/n/o.go", "m/n2/o.go")])
def test_a_rename_is_written_as_git_diff_stat_writes_it(tmp_path: Path, old: str, new: str) -> None:
    root = write_tree(tmp_path / "repo", {old: b"package x\n"})
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "start")
    (root / new).parent.mkdir(parents=True, exist_ok=True)
    (root / old).rename(root / new)
    git(root, "add", "-A")
    [stat, _] = git(root, "diff", "--cached", "--stat=200", "-M100%", "HEAD").splitlines()
    assert stat.split("|")[0].strip() == explain._renamed(old, new)


def test_files_the_context_leaves_out_and_other_functions_do_not_count(checkout: tuple[Path, str]) -> None:
    root, commit = checkout
    write_tree(root, {"functions/fn/notes.txt": b"changed\n",  # .dockerignore
                      "functions/fn/main_test.go": b"package main\n// changed\n",  # not built
                      "functions/other/main.go": b"package main\n// changed\n"})  # another function's
    found = changes(root, commit)
    assert found is not None and found.total == 0


def test_a_deleted_file_counts_only_if_the_context_would_hold_it(checkout: tuple[Path, str]) -> None:
    root, commit = checkout
    for gone in ("functions/fn/notes.txt", "functions/fn/main_test.go", "functions/fn/main.go"):
        (root / gone).unlink()  # .dockerignore'd, a test file of the Go build, an input
    found = changes(root, commit)
    assert found is not None and [f.path for f in found.files] == ["functions/fn/main.go"]


def test_a_commit_not_in_the_history_gives_no_list(checkout: tuple[Path, str]) -> None:
    root, _ = checkout
    assert changes(root, "0" * 40) is None
    assert changes(root, "not a commit") is None


def test_dirty_says_whether_the_inputs_differ_from_the_commit(checkout: tuple[Path, str]) -> None:
    root, commit = checkout
    repo = gitdiff.open_checkout(root)
    assert repo is not None
    lay = layout(pinned_fn(root))
    assert not gitdiff.dirty(repo, root, commit, lay.input_dirs, lay.entries)
    write_tree(root, {"shared/errors/errors.go": b"package errors\n"})
    assert gitdiff.dirty(repo, root, commit, lay.input_dirs, layout(pinned_fn(root)).entries)


@pytest.mark.parametrize("borrowed", ["objects/info/alternates", "commondir"])
def test_a_checkout_that_borrows_objects_from_elsewhere_is_not_read(checkout: tuple[Path, str], borrowed: str) -> None:
    root, _ = checkout
    (root / ".git" / borrowed).write_text("/etc\n")
    assert gitdiff.open_checkout(root) is None


def test_an_image_says_it_is_dirty_or_that_it_cannot_tell_and_a_clean_one_says_nothing(tmp_path: Path,
                                                                                       checkout: tuple[Path, str]) -> None:
    root, commit = checkout
    context = assemble(pinned_fn(root), tmp_path / "ctx")
    assert checkout_labels(root, context) == {REVISION_LABEL: commit}
    (root / ".git" / "objects" / "info" / "alternates").write_text("/etc\n")  # a checkout deployer does not read
    assert checkout_labels(root, context) == {REVISION_LABEL: commit, image_inputs.DIRTY_LABEL: "unknown"}
    (root / ".git" / "objects" / "info" / "alternates").unlink()
    write_tree(root, {"shared/errors/errors.go": b"package errors\n"})
    edited = assemble(pinned_fn(root), tmp_path / "ctx2")
    assert checkout_labels(root, edited) == {REVISION_LABEL: commit, image_inputs.DIRTY_LABEL: "true"}


def test_a_git_file_or_link_is_not_followed(tmp_path: Path, checkout: tuple[Path, str]) -> None:
    root, _ = checkout
    other = write_tree(tmp_path / "other", {"x": b""})
    (other / ".git").write_text(f"gitdir: {root / '.git'}\n")
    assert gitdiff.open_checkout(other) is None
    linked = tmp_path / "linked"
    linked.mkdir()
    os.symlink(root / ".git", linked / ".git")
    assert gitdiff.open_checkout(linked) is None


@pytest.mark.parametrize(("url", "clean"), [
    ("https://user:ghp_secret@github.com/owner/repo.git", "https://github.com/owner/repo"),
    ("https://github.com/owner/repo?token=x#frag", "https://github.com/owner/repo"),
    ("git@github.com:owner/repo.git", "https://github.com/owner/repo"),
    ("ssh://git@gitlab.example.com:2222/group/repo.git", "https://gitlab.example.com/group/repo"),
    ("file:///etc/passwd", None),
    ("/srv/git/repo.git", None),
    ("https://github.com/owner/re po\x1b[31m", None),
    ("https://[::1:bad/x", None),
])
def test_a_remote_url_is_shown_without_credentials(url: str, clean: str | None) -> None:
    assert gitdiff.clean_url(url) == clean


def test_the_source_url_is_read_from_the_origin_remote(checkout: tuple[Path, str]) -> None:
    root, _ = checkout
    assert gitdiff.source_url(root) is None
    git(root, "remote", "add", "origin", "https://bot:secret@github.com/owner/repo.git")
    assert gitdiff.source_url(root) == "https://github.com/owner/repo"


def numstat(root: Path, commit: str) -> dict[str, tuple[int, int]]:
    """git's own count of the checkout's tracked changes in fn's inputs, exact renames (-M100%) by
    their new path."""
    out = subprocess.run(["git", "diff", "--find-renames=100%", "--numstat", "-z", commit, "--", "functions/fn", "shared/errors"],
                         cwd=root, check=True, capture_output=True, text=True).stdout
    fields, counts = out.split("\0"), {}
    while len(fields) > 1:
        added, deleted, path = fields.pop(0).split("\t")
        if not path:  # a rename: its old path, then its new one
            fields.pop(0)
            path = fields.pop(0)
        counts[path] = (int(added), int(deleted))
    return counts


def counted(found: FileChanges | None) -> dict[str, tuple[int, int]]:
    assert found is not None
    return {f.path: (f.added, f.deleted) for f in found.files}


def test_line_counts_equal_git_numstat_on_edits_it_counts_differently_from_difflib(checkout: tuple[Path, str]) -> None:
    root, _ = checkout
    # Lines git's shortest edit aligns otherwise than difflib's matcher; a last line losing its
    # newline; CRLF line ends ("\r" belongs to a line); a file moved; a directory deleted.
    write_tree(root, {"shared/errors/a.go": b"}\nb\n}\n", "shared/errors/b.go": b"x\ny\nz\n",
                      "shared/errors/c.go": b"1\n2\n3\n", "shared/errors/d.go": b"l1\nl2\n", "shared/errors/sub/e.go": b"e\n"})
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "more")
    commit = git(root, "rev-parse", "HEAD")
    write_tree(root, {"shared/errors/a.go": b"b\nc\n}\n", "shared/errors/b.go": b"x\ny\nz",
                      "shared/errors/c.go": b"1\r\n2\r\n3\n"})
    (root / "shared/errors/d.go").rename(root / "shared/errors/moved.go")
    git(root, "add", "shared/errors/moved.go")  # tracked, so that git counts it too
    (root / "shared/errors/sub/e.go").unlink()
    (root / "shared/errors/sub").rmdir()
    os.chmod(root / "functions/fn/main.go", 0o755)
    ours = counted(changes(root, commit))
    assert ours == numstat(root, commit)
    assert ours["shared/errors/a.go"] == (1, 1)  # difflib: (2, 2)
    assert ours["functions/fn/main.go"] == (0, 0) and ours["shared/errors/b.go"] == (1, 1)


def test_a_submodule_is_not_listed_file_by_file(tmp_path: Path, checkout: tuple[Path, str]) -> None:
    root, _ = checkout
    sub = write_tree(tmp_path / "sub", {"x.go": b"package x\n"})
    git(sub, "init", "-q")
    git(sub, "add", "-A")
    git(sub, "commit", "-q", "-m", "sub")
    git(root, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "shared/errors/sub")
    git(root, "commit", "-q", "-m", "with a submodule")
    found = changes(root, git(root, "rev-parse", "HEAD"))
    assert found is not None and found.total == 0  # its files are in the context, not in the commit's tree


def test_a_file_too_large_to_read_is_counted_by_size_without_failing_the_list(checkout: tuple[Path, str]) -> None:
    root, commit = checkout
    (root / "shared/errors/big.bin").write_bytes(b"a" * (gitdiff.MAX_FILE_BYTES * 70))
    assert counted(changes(root, commit)) == {"shared/errors/big.bin": (0, 0)}
    found = changes(root, commit)
    assert found is not None and found.files[0].binary and found.files[0].new_size == gitdiff.MAX_FILE_BYTES * 70


def test_a_name_that_is_no_printable_text_is_shown_escaped_and_a_plan_file_keeps_it(checkout: tuple[Path, str]) -> None:
    root, commit = checkout
    (root / os.fsdecode(b"shared/errors/bad\xff\x1b[31m\n.go")).write_bytes(b"x\n")
    found = changes(root, commit)
    assert found is not None and [f.path for f in found.files] == ["shared/errors/bad\\xff\\x1b[31m\\n.go"]
    saved = image_inputs.to_dict(image_inputs.Explanation(labelled=True, commit=commit, files=found))
    assert image_inputs.from_dict(json.loads(json.dumps(saved)), "explanation") == image_inputs.Explanation(
        labelled=True, commit=commit, files=found)


@pytest.mark.parametrize("kind", ["replace directives", "go workspace", "dockerfile"])
def test_an_assembled_context_of_a_clean_checkout_is_not_dirty_and_has_the_layouts_inputs(
        tmp_path: Path, kind: str) -> None:
    # What apply writes into a context and the checkout does not hold as such (go.mod rewritten for
    # the shared modules' new places, a generated go.work, a Dockerfile) is no uncommitted change.
    if kind == "go workspace":
        from tests.unit.test_workspace import BASE, FUNCTION
        root, source, build = write_tree(tmp_path / "repo", BASE), FUNCTION, {}
    else:
        extra = {"functions/fn/Dockerfile": b"FROM scratch\nCOPY . /\n"} if kind == "dockerfile" else {}
        root, source = write_tree(tmp_path / "repo", {**REPO, **extra}), "functions/fn"
        build = {"dockerfile": root / "functions/fn/Dockerfile"} if kind == "dockerfile" else {}
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "start")
    commit = git(root, "rev-parse", "HEAD")
    fn = pinned_fn(root, source, **build)
    context = assemble(fn, tmp_path / "ctx")
    assert dict(context.inputs) == layout(fn).digests()[1]
    repo = gitdiff.open_checkout(root)
    assert repo is not None
    assert not gitdiff.dirty(repo, root, commit, context.input_dirs, disk_entries(context.path))
    main_go = root / source / "main.go"
    main_go.write_bytes(main_go.read_bytes() + b"// edited\n")
    assert gitdiff.dirty(repo, root, commit, context.input_dirs, disk_entries(context.path))


def test_functions_sharing_modules_share_the_comparisons_and_get_the_same_lists(checkout: tuple[Path, str]) -> None:
    root, commit = checkout
    write_tree(root, {"shared/errors/errors.go": b"package errors\n", "shared/errors/new.go": b"package errors\n"})
    repo = gitdiff.open_checkout(root)
    assert repo is not None
    lay, memo = layout(pinned_fn(root)), gitdiff.Memo()
    first = gitdiff.changed_files(repo, root, commit, lay.input_dirs, lay.entries, memo)
    assert memo.compared and memo.listed
    assert gitdiff.changed_files(repo, root, commit, lay.input_dirs, lay.entries, memo) == first == changes(root, commit)
    assert first is not None and [f.path for f in first.files] == ["shared/errors/errors.go", "shared/errors/new.go"]
