"""image_inputs: what an image is made of, each input with its own digest, as labels on the image
and back; and the explanation a plan gives of a changing function from them.

The source digest covers everything that makes an image; to a reviewer it says only *that*
something changed. Apply labels each image with the digest of each input alone: the function's
module ("function"), each shared module ("module/<path in the repository>"), the recipe with its
Dockerfile ("dockerfile"), the build settings and the base images (deployer.digest.input_digests).
Plan reads the labels of the image Lambda runs now and says which inputs differ from the source's.

Labels come from a registry, and the image may have been pushed by anyone who can push there:
only keys and values of the exact forms written here are taken, and a bounded number of them.
Pure data and logic: no I/O.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from deployer.digest import BASE_IMAGES_INPUT, BUILD_SETTINGS_INPUT, DOCKERFILE_INPUT

FUNCTION_INPUT = "function"
MODULE_PREFIX = "module/"
LABEL_PREFIX = "dev.deployer.input."
# Labels apply writes besides the inputs': the repository the source came from (OCI's), and
# whether the checkout had uncommitted changes in the image's inputs when it was built.
SOURCE_LABEL = "org.opencontainers.image.source"
DIRTY_LABEL = "dev.deployer.revision-dirty"
DIRTY_UNKNOWN = "unknown"  # its value when the checkout could not be compared with its commit

_FIXED = (FUNCTION_INPUT, DOCKERFILE_INPUT, BUILD_SETTINGS_INPUT, BASE_IMAGES_INPUT)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# A module's path as a label may hold it: a path of plain names, bounded. A label is written by
# whoever pushed the image, and a name is shown to reviewers as "<name> removed": spaces, commas
# or semicolons would let it pass for other words of the explanation ("x; function code unchanged").
_MODULE = re.compile(r"module/(?=.{1,200}$)[A-Za-z0-9._~+@-]+(?:/[A-Za-z0-9._~+@-]+)*")
MAX_INPUTS = 200  # far more shared modules than any function has; a bound on what a label set can make us show
_COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


def labels(inputs: Mapping[str, str]) -> dict[str, str]:
    """The labels that record `inputs` (name -> digest) on an image."""
    return {LABEL_PREFIX + name: digest for name, digest in sorted(inputs.items())}


def from_labels(found: Mapping[str, str]) -> dict[str, str] | None:
    """The inputs recorded in an image's labels; None when it records none (not built by this
    deployer), or more than deployer ever writes."""
    inputs = {}
    for key, value in found.items():
        name = key[len(LABEL_PREFIX):] if key.startswith(LABEL_PREFIX) else None
        if name is not None and (name in _FIXED or _MODULE.fullmatch(name)) and _DIGEST.fullmatch(value):
            inputs[name] = value
    if not inputs or len(inputs) > MAX_INPUTS:
        return None
    return inputs


def commit_of(found: Mapping[str, str], revision_label: str) -> str | None:
    """The commit an image's labels say it was built from, if it has the form of one."""
    value = found.get(revision_label, "")
    return value if _COMMIT.fullmatch(value) else None


def display_name(name: str) -> str:
    """An input as a reviewer knows it: a shared module by its path, the others in words."""
    if name.startswith(MODULE_PREFIX):
        return name[len(MODULE_PREFIX):]
    return {FUNCTION_INPUT: "function code", DOCKERFILE_INPUT: "Dockerfile", BUILD_SETTINGS_INPUT: "build settings",
            BASE_IMAGES_INPUT: "base images"}.get(name, name)


@dataclass(frozen=True)
class InputChange:
    """An input of the image that is not what the running image was made of: `changed` (both have
    it, with other digests), `added` (the running image has none of it) or `removed`."""

    name: str
    change: Literal["changed", "added", "removed"]


@dataclass(frozen=True)
class FileChange:
    """A file of the function's inputs that differs between the running image's commit and the
    checkout, as `git diff --stat` counts it: lines added and deleted, or for a binary (or very
    large) file its sizes in bytes. `path` is POSIX, relative to the repository; `renamed_from`
    the path it had at the commit, when it moved there with the same content (an exact rename)."""

    path: str
    added: int = 0
    deleted: int = 0
    binary: bool = False
    old_size: int | None = None  # None: the file is new
    new_size: int | None = None  # None: the file is gone
    renamed_from: str | None = None


@dataclass(frozen=True)
class FileChanges:
    """The changed files in the inputs since `commit`: the first `files` (by path) of `total`."""

    files: tuple[FileChange, ...]
    total: int


@dataclass(frozen=True)
class Explanation:
    """Why a function's image changes, from the labels of the image it runs now. `labelled` False:
    that image records no inputs (built by another tool, or by an older deployer), so only the source digest says it
    differs; `unreadable` when its labels could not be read. `commit`: what the running image was built from, `dirty` when from a checkout with
    uncommitted changes in its inputs (None: whether it had is unknown). `files`: None when the commit is not in the local history
    (or there is no checkout)."""

    labelled: bool
    unreadable: bool = False  # the labels could not be read (registry refused, image gone)
    changed: tuple[InputChange, ...] = ()
    unchanged: tuple[str, ...] = ()
    commit: str | None = None
    dirty: bool | None = False
    files: FileChanges | None = None


def compare(desired: Mapping[str, str], running: Mapping[str, str]) -> tuple[tuple[InputChange, ...], tuple[str, ...]]:
    """The inputs that differ between the source (`desired`) and the running image, and those that
    do not; each in the order a reviewer reads them: the function, its modules, then the rest."""
    changed, unchanged = [], []
    for name in sorted(desired.keys() | running.keys(), key=_reading_order):
        if name not in running:
            changed.append(InputChange(name, "added"))
        elif name not in desired:
            changed.append(InputChange(name, "removed"))
        elif desired[name] != running[name]:
            changed.append(InputChange(name, "changed"))
        else:
            unchanged.append(name)
    return tuple(changed), tuple(unchanged)


def _reading_order(name: str) -> tuple[int, str]:
    if name == FUNCTION_INPUT:
        return 0, name
    if name.startswith(MODULE_PREFIX):
        return 1, name
    return 2 + _FIXED.index(name) if name in _FIXED else 9, name


def explain(desired: Mapping[str, str], running_labels: Mapping[str, str] | None, revision_label: str,
            files: FileChanges | None = None) -> Explanation:
    """The explanation of a change from the source's input digests and the running image's labels
    (None: they could not be read; told as unlabelled)."""
    running = from_labels(running_labels) if running_labels is not None else None
    if running is None or not desired:
        return Explanation(labelled=False)
    changed, unchanged = compare(desired, running)
    assert running_labels is not None
    dirty = {"true": True, DIRTY_UNKNOWN: None}.get(running_labels.get(DIRTY_LABEL, ""), False)
    return Explanation(labelled=True, changed=changed, unchanged=unchanged, commit=commit_of(running_labels, revision_label),
                       dirty=dirty, files=files)


# -- in a plan file (deployer.planfile): foreign input, checked field by field ----------------------

MAX_PATH = 1024
MAX_COUNT = 1 << 53  # of files, lines or bytes: more than any checkout has; a plan file's larger numbers only make long lines


def to_dict(why: Explanation) -> dict[str, Any]:
    return dataclasses.asdict(why)


def from_dict(value: Any, where: str) -> Explanation | None:
    """An explanation as a plan file holds it (None: none); ValueError or TypeError when it is not
    one `to_dict` could have written."""
    if value is None:
        return None
    data = _exact(value, dict, where)
    if set(data) != {f.name for f in dataclasses.fields(Explanation)}:
        raise ValueError(f"{where} has other keys than an explanation")
    changed = tuple(_input_change(c, f"{where}.changed") for c in _bounded_list(data["changed"], f"{where}.changed"))
    unchanged = tuple(_input_name(n, f"{where}.unchanged") for n in _bounded_list(data["unchanged"], f"{where}.unchanged"))
    commit = data["commit"]
    if commit is not None and not (isinstance(commit, str) and _COMMIT.fullmatch(commit)):
        raise ValueError(f"{where}.commit is not a commit id")
    return Explanation(labelled=_exact(data["labelled"], bool, f"{where}.labelled"),
                       unreadable=_exact(data["unreadable"], bool, f"{where}.unreadable"),
                       changed=changed, unchanged=unchanged, commit=commit,
                       dirty=None if data["dirty"] is None else _exact(data["dirty"], bool, f"{where}.dirty"),
                       files=_file_changes(data["files"], f"{where}.files"))


def _input_change(value: Any, where: str) -> InputChange:
    data = _exact(value, dict, where)
    if set(data) != {"name", "change"} or data["change"] not in ("changed", "added", "removed"):
        raise ValueError(f"{where} is not an input change")
    return InputChange(_input_name(data["name"], where), data["change"])


def _input_name(value: Any, where: str) -> str:
    if not (isinstance(value, str) and (value in _FIXED or _MODULE.fullmatch(value))):
        raise ValueError(f"{where} names no input")
    return value


def _file_changes(value: Any, where: str) -> FileChanges | None:
    if value is None:
        return None
    data = _exact(value, dict, where)
    if set(data) != {"files", "total"}:
        raise ValueError(f"{where} is not a list of changed files")
    files = tuple(_file_change(f, f"{where}.files") for f in _bounded_list(data["files"], f"{where}.files"))
    total = _exact(data["total"], int, f"{where}.total")
    if not len(files) <= total <= MAX_COUNT:
        raise ValueError(f"{where}.total is less than the files listed, or more than a checkout holds")
    return FileChanges(files, total)


def _file_change(value: Any, where: str) -> FileChange:
    data = _exact(value, dict, where)
    if set(data) != {f.name for f in dataclasses.fields(FileChange)}:
        raise ValueError(f"{where} is not a changed file")
    path, renamed_from = data["path"], data["renamed_from"]
    for field, value in (("path", path), ("renamed_from", path if renamed_from is None else renamed_from)):
        if not (isinstance(value, str) and 0 < len(value) <= MAX_PATH and value.isprintable()):
            raise ValueError(f"{where}.{field} is not a path")
    sizes = [data[k] for k in ("old_size", "new_size")]
    if any(s is not None and (type(s) is not int or not 0 <= s <= MAX_COUNT) for s in sizes):
        raise ValueError(f"{where} has a size that is not a count of bytes")
    counts = [_exact(data[k], int, f"{where}.{k}") for k in ("added", "deleted")]
    if not all(0 <= count <= MAX_COUNT for count in counts):
        raise ValueError(f"{where} counts lines below zero or past any file's")
    if renamed_from is not None and (renamed_from == path or any(counts) or sizes[0] is None or sizes[0] != sizes[1]):
        raise ValueError(f"{where} is not an exact rename (another path, the same size, no line counted)")
    return FileChange(path, counts[0], counts[1], _exact(data["binary"], bool, f"{where}.binary"), sizes[0], sizes[1],
                      renamed_from)


def _exact(value: Any, kind: type, where: str) -> Any:
    if type(value) is not kind:  # `is not`: True is no int here
        raise TypeError(f"{where} is {type(value).__name__}, not {kind.__name__}")
    return value


def _bounded_list(value: Any, where: str) -> list[Any]:
    items: list[Any] = _exact(value, list, where)
    if len(items) > MAX_INPUTS:
        raise ValueError(f"{where} holds more than {MAX_INPUTS} entries")
    return items
