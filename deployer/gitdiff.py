"""gitdiff: which files of a function's inputs differ between a commit and the checkout, counted as
`git diff -M100% --numstat COMMIT -- <the input directories>` counts them (lines end at "\n" only;
the shortest edit, as git's Myers diff; a mode change alone counts no line; a submodule is not
compared; a file moved with its content is a rename, paired as git pairs exact renames), with the
files not committed yet besides, as they are in the image; and what a checkout says of itself for
an image's labels (its repository URL, uncommitted changes in the inputs).

The git objects are read with dulwich: no git process runs (git runs hooks and reads configuration
that can name programs, such as core.fsmonitor). Only a checkout whose `.git` is a directory of its
own is read, and not one that borrows objects from elsewhere (alternates, a worktree's commondir):
everything read stays inside the repository. Files of the checkout are read through
deployer.paths.read_inside, bounded; what is compared is what the build context holds
(deployer.layout), so files .dockerignore leaves out do not count.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

from dulwich.object_store import BaseObjectStore
from dulwich.objects import Commit, ObjectID, Tree
from dulwich.repo import Repo

from deployer.digest import EXEC_FILE, OTHER, SYMLINK, TreeEntry
from deployer.image_inputs import MAX_PATH, FileChange, FileChanges
from deployer.paths import FileTooLarge, open_inside, read_inside

# (input name, location in the build context, directory): deployer.layout.Layout.input_dirs
InputDirs = Sequence[tuple[str, str, Path]]

MAX_FILE_BYTES = 1 << 20  # larger files are counted by size, as binary ones are
MAX_DIFF_LINES = 5000  # beyond this many lines a side, lines are counted as a multiset (no alignment)
MAX_DIFF_WORK = 500_000  # diagonals visited by the shortest-edit search of one file before it gives up
MAX_FILES_LISTED = 50
MAX_FILES_READ = 20_000  # a bound on the work for one function
_COMMIT = re.compile(r"[0-9a-f]{40}")
_GITLINK, _SYMLINK_MODE = 0o160000, 0o120000


def open_checkout(root: Path) -> Repo | None:
    """The dulwich Repo of the checkout at `root`, or None when there is none deployer reads."""
    git = root / ".git"
    try:
        if not stat.S_ISDIR(os.lstat(git).st_mode):
            return None
        if any(os.path.lexists(git / name) for name in ("commondir", "objects/info/alternates", "objects/info/http-alternates")):
            return None
        return Repo(str(root))
    except Exception:  # dulwich raises its own errors for a damaged repository: no diff then
        return None


def has_commit(repo: Repo, commit: str) -> bool:
    if not _COMMIT.fullmatch(commit):
        return False
    try:
        return ObjectID(commit.encode()) in repo.object_store
    except Exception:
        return False


class Memo:
    """What the functions of one plan share in a checkout: the commit's tree listed under each
    directory, and each file compared (functions built from the same shared modules compare the
    same files). Valid while the checkout does not change: one plan."""

    def __init__(self) -> None:
        self.listed: dict[tuple[ObjectID, str], list[tuple[str, int, ObjectID]]] = {}
        self.compared: dict[tuple[str, int, ObjectID, tuple[str, str | None] | None], FileChange | None] = {}
        self.blob_ids: dict[tuple[str, tuple[str, str | None]], bytes] = {}  # a new file's git blob id, by path


# Whether a context path would be in the build context if its file existed (.dockerignore, the
# Go build's test files): a file deleted since the commit counts only then. Layout.would_hold.
WouldHold = Callable[[str], bool]


def changed_files(repo: Repo, root: Path, commit: str, input_dirs: InputDirs, entries: Iterable[TreeEntry],
                  memo: Memo | None = None, would_hold: WouldHold | None = None) -> FileChanges | None:
    """The files of a build context's inputs (`input_dirs`, and the context's `entries`) that differ
    between `commit` and the checkout at `root`; None when the commit is not in the repository or
    cannot be read. `memo` keeps what the next call for the same checkout can reuse; `would_hold`
    tells a deleted input from a deleted file the context would leave out anyway."""
    if not has_commit(repo, commit):
        return None
    try:
        return _changes(repo, root, commit, input_dirs, entries, memo or Memo(), would_hold)
    except Exception:  # a damaged object, a file gone meanwhile: the plan goes on without the list
        return None


def _changes(repo: Repo, root: Path, commit: str, input_dirs: InputDirs, entries: Iterable[TreeEntry], memo: Memo,
             would_hold: WouldHold | None) -> FileChanges:
    store = repo.object_store
    head = store[ObjectID(commit.encode())]
    if not isinstance(head, Commit):
        raise ValueError("not a commit")
    tree = store[head.tree]
    if not isinstance(tree, Tree):
        raise ValueError("not a tree")
    committed: dict[str, tuple[int, ObjectID]] = {}  # by path: input directories may nest
    for directory in _input_dirs(input_dirs, root):
        listing = (tree.id, directory)
        if listing not in memo.listed:
            memo.listed[listing] = _committed(store, tree, directory)
        committed.update((path, (mode, sha)) for path, mode, sha in memo.listed[listing])
    # Submodules (gitlinks): git compares their commits, not their files; neither does this.
    submodules = tuple(path + "/" for path, (mode, _) in committed.items() if mode == _GITLINK)
    # repository path -> (kind, link target), for what the context holds from the checkout (not
    # what deployer generates there: a go.work, a copied Dockerfile); git tracks no FIFO or socket
    in_context = {path: found for path, found in _context_files(input_dirs, entries, root)
                  if found[0] != OTHER and not path.startswith(submodules) and os.path.lexists(root / path)}
    changes: list[FileChange] = []
    gone: dict[bytes, list[tuple[int, int]]] = {}  # a deleted file's blob id -> (its change's index, mode): renames' old sides
    seen: set[str] = set()
    read = 0
    for path, (mode, sha) in committed.items():
        if mode != _GITLINK:
            seen.add(path)
            if path not in in_context and (os.path.lexists(root / path) or not _was_input(path, input_dirs, root, would_hold)):
                continue  # left out of the context (.dockerignore, tests): not an input, present or deleted
            read += 1
            if read > MAX_FILES_READ:
                break
            now = in_context.get(path)
            key = (path, mode, sha, now)
            if key not in memo.compared:
                memo.compared[key] = _compare(store, root, path, mode, sha, now)
            change = memo.compared[key]
            if change is not None:
                if now is None:
                    gone.setdefault(bytes(sha), []).append((len(changes), mode))
                changes.append(change)
    renamed: set[int] = set()  # the deletions that are a rename's old side
    sizes = {changes[index].old_size for candidates in gone.values() for index, _ in candidates}
    for path, now in in_context.items():
        if path not in seen and read < MAX_FILES_READ:
            read += 1
            key = (path, 0, ObjectID(b""), now)  # a file the commit does not have
            if key not in memo.compared:
                memo.compared[key] = _new_file(root, path, now)
            change = memo.compared[key]
            if change is not None and gone:
                change = _renamed(change, changes, gone, sizes, renamed, memo, root, path, now)
            if change is not None:
                changes.append(change)
    changes = [change for index, change in enumerate(changes) if index not in renamed]
    changes.sort(key=lambda c: c.path)
    return FileChanges(tuple(changes[:MAX_FILES_LISTED]), len(changes))


def _renamed(added: FileChange, changes: list[FileChange], gone: dict[bytes, list[tuple[int, int]]], sizes: set[int | None],
             renamed: set[int], memo: Memo, root: Path, path: str, now: tuple[str, str | None]) -> FileChange:
    """A new file that has the content of a deleted one is that file renamed, paired as git pairs
    exact renames (diffcore-rename's find_identical_files): the same blob, both regular files (or
    the same kind), a deleted file of the same name first. The deletion, marked in `renamed`, is
    not listed then. Only a new file of a deleted file's size is hashed (again) for it."""
    if added.new_size not in sizes:  # the deleted files' sizes
        return added
    key = (path, now)
    if key not in memo.blob_ids:
        memo.blob_ids[key] = _blob_id(_current(root, path, now))
    mode = _git_mode(now[0])
    candidates = [(index, old_mode) for index, old_mode in gone.get(memo.blob_ids[key], ())
                  if old_mode == mode or (stat.S_ISREG(old_mode) and stat.S_ISREG(mode))]
    if not candidates:
        return added
    name = path.rsplit("/", 1)[-1]
    index, old_mode = next((c for c in candidates if changes[c[0]].path.rsplit("/", 1)[-1] == display_path(name)), candidates[0])
    gone[memo.blob_ids[key]].remove((index, old_mode))
    renamed.add(index)
    old = changes[index]
    return FileChange(added.path, binary=old.binary, old_size=old.old_size, new_size=added.new_size, renamed_from=old.path)


def _was_input(path: str, input_dirs: InputDirs, root: Path, would_hold: WouldHold | None) -> bool:
    """Whether a committed file the checkout no longer has would be in the context (as its path there)."""
    if would_hold is None:
        return True
    real = root.resolve()
    for _, loc, directory in sorted(input_dirs, key=lambda d: -len(d[1])):
        if directory.is_relative_to(real):
            rel = directory.relative_to(real).as_posix()
            if rel in ("", ".") or path == rel or path.startswith(rel + "/"):
                inner = path[len(rel):].lstrip("/") if rel not in ("", ".") else path
                return would_hold(f"{loc}/{inner}" if loc else inner)
    return True


def _input_dirs(input_dirs: InputDirs, root: Path) -> list[str]:
    real = root.resolve()
    return [d.relative_to(real).as_posix() for _, _, d in input_dirs if d.is_relative_to(real)]


def _context_files(input_dirs: InputDirs, entries: Iterable[TreeEntry], root: Path) -> Iterator[tuple[str, tuple[str, str | None]]]:
    """Each file and link of the context, by its path in the repository."""
    real = root.resolve()
    places = sorted(((loc, d) for _, loc, d in input_dirs if d.is_relative_to(real)), key=lambda p: -len(p[0]))
    for entry in entries:
        if entry.kind == "dir":
            continue
        for loc, directory in places:
            if loc == "" or entry.path == loc or entry.path.startswith(loc + "/"):
                rel = entry.path[len(loc):].lstrip("/")
                yield (directory / rel).relative_to(real).as_posix(), (entry.kind, entry.target)
                break


def _committed(store: BaseObjectStore, tree: Tree, directory: str) -> list[tuple[str, int, ObjectID]]:
    """Every blob and gitlink of `directory` in the commit's tree: (path in the repository, mode, sha)."""
    try:
        mode, sha = tree.lookup_path(store.__getitem__, os.fsencode(directory)) if directory not in ("", ".") else (0o40000, tree.id)
    except KeyError:
        return []  # the directory did not exist then
    if not stat.S_ISDIR(mode):
        return []
    prefix = "" if directory in ("", ".") else directory + "/"
    # Paths decode as the file system's names do (os.fsdecode), so that both sides match.
    return [(prefix + os.fsdecode(e.path), e.mode, e.sha)
            for e in store.iter_tree_contents(sha) if e.path is not None and e.sha is not None and e.mode is not None]


def _compare(store: BaseObjectStore, root: Path, path: str, mode: int, sha: ObjectID, now: tuple[str, str | None] | None) -> FileChange | None:
    if now is None:
        return _stat(path, store[sha].as_raw_string(), None)
    new = _current(root, path, now)
    # The checkout's side is hashed first: the committed blob is inflated only when it differs.
    same_content = _blob_id(new) == sha
    if same_content and _git_mode(now[0]) == mode:
        return None
    return _stat(path, store[sha].as_raw_string(), new, mode_only=same_content)


def _git_mode(kind: str) -> int:
    return {SYMLINK: _SYMLINK_MODE, EXEC_FILE: 0o100755}.get(kind, 0o100644)


def _blob_id(content: bytes | _Large) -> bytes:
    if isinstance(content, _Large):
        return content.blob_id
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest().encode()


class _Large:
    """A checkout file too large to diff by lines: its size and git blob id, hashed as it is read
    (never held in memory whole)."""

    def __init__(self, path: Path, root: Path) -> None:
        with open_inside(path, root) as f:
            self.size = os.fstat(f.fileno()).st_size
            h = hashlib.sha1(b"blob %d\0" % self.size)
            read = 0
            while chunk := f.read(1 << 20):
                h.update(chunk)
                read += len(chunk)
        if read != self.size:
            raise OSError(f"{path} changed while it was read")
        self.blob_id = h.hexdigest().encode()


def _new_file(root: Path, path: str, now: tuple[str, str | None]) -> FileChange:
    return _stat(path, None, _current(root, path, now))


def _current(root: Path, path: str, now: tuple[str, str | None]) -> bytes | _Large:
    kind, target = now
    if kind == SYMLINK:
        return os.fsencode(target or "")  # git stores a link as its target
    try:
        return read_inside(root / path, root, limit=MAX_FILE_BYTES)
    except FileTooLarge:
        return _Large(root / path, root)


def _stat(path: str, old: bytes | None, new: bytes | _Large | None, mode_only: bool = False) -> FileChange:
    """A file's change; `mode_only`: the same content, another mode (executable bit, or a link that
    became a file), which git shows with no line counted."""
    shown = display_path(path)
    old_size = len(old) if old is not None else None
    new_size = (new.size if isinstance(new, _Large) else len(new)) if new is not None else None
    if mode_only:
        return FileChange(shown, old_size=old_size, new_size=new_size)
    if any(isinstance(side, _Large) or (side is not None and (len(side) > MAX_FILE_BYTES or b"\0" in side[:8000]))
           for side in (old, new)):
        return FileChange(shown, binary=True, old_size=old_size, new_size=new_size)
    assert not isinstance(new, _Large)
    added, deleted = _count_lines(_lines(old or b""), _lines(new or b""))
    return FileChange(shown, added, deleted, old_size=old_size, new_size=new_size)


def display_path(path: str) -> str:
    """A repository path as a plan shows and saves it: printable (bytes that are no UTF-8, control
    and other unprintable characters as backslash escapes, as git quotes them), at most
    image_inputs.MAX_PATH characters."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return text if len(text) <= MAX_PATH else text[: MAX_PATH - 3] + "..."


def _lines(data: bytes) -> list[bytes]:
    """The lines of a file as git counts them: ended by "\n" only (a "\r" is part of its line), each
    with its end, so that a last line without one differs from the same line with it."""
    lines = data.split(b"\n")
    return [line + b"\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def _count_lines(old: Sequence[bytes], new: Sequence[bytes]) -> tuple[int, int]:
    """Lines added and deleted: the shortest edit, as git's Myers diff finds it (difflib's matcher
    is not minimal and counts more); past a bound on the work, difflib's count, then a multiset's."""
    start = 0  # common ends cost nothing, as in git
    while start < min(len(old), len(new)) and old[start] == new[start]:
        start += 1
    end = 0
    while end < min(len(old), len(new)) - start and old[-1 - end] == new[-1 - end]:
        end += 1
    old, new = old[start:len(old) - end], new[start:len(new) - end]
    if not old or not new:
        return len(new), len(old)
    distance = _edit_distance(old, new, MAX_DIFF_WORK)
    if distance is not None:
        common = (len(old) + len(new) - distance) // 2
        return len(new) - common, len(old) - common
    if max(len(old), len(new)) > MAX_DIFF_LINES:
        from collections import Counter

        before, after = Counter(old), Counter(new)
        return sum((after - before).values()), sum((before - after).values())
    added = deleted = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag != "equal":
            deleted += i2 - i1
            added += j2 - j1
    return added, deleted


def _edit_distance(old: Sequence[bytes], new: Sequence[bytes], max_work: int) -> int | None:
    """The fewest lines deleted plus added to turn `old` into `new` (Myers' O(ND) greedy
    algorithm), or None once it would take more than about `max_work` steps."""
    n, m = len(old), len(new)
    furthest = {1: 0}  # diagonal k = x - y -> the furthest x reached on it
    work = 0
    for d in range(n + m + 1):
        for k in range(-d, d + 1, 2):
            x = furthest[k + 1] if k == -d or (k != d and furthest[k - 1] < furthest[k + 1]) else furthest[k - 1] + 1
            y = x - k
            while x < n and y < m and old[x] == new[y]:
                x, y = x + 1, y + 1
            furthest[k] = x
            if x >= n and y >= m:
                return d
        work += d + 1
        if work > max_work:
            return None
    return None


def dirty(repo: Repo, root: Path, head: str, input_dirs: InputDirs, entries: Iterable[TreeEntry],
          would_hold: WouldHold | None = None) -> bool | None:
    """Whether the checkout's files in a context's inputs differ from commit `head`'s (None when
    that cannot be told)."""
    found = changed_files(repo, root, head, input_dirs, entries, would_hold=would_hold)
    return None if found is None else found.total > 0


def source_url(root: Path) -> str | None:
    """The URL of the checkout's `origin` remote for the `org.opencontainers.image.source` label,
    with no credentials: user and password, query and fragment are dropped; an scp-like address
    (git@host:owner/repo) becomes https://host/owner/repo. None when there is none."""
    try:
        from dulwich.config import ConfigFile

        data = read_inside(root / ".git" / "config", root, limit=1 << 20)
        import io

        url = ConfigFile.from_file(io.BytesIO(data)).get((b"remote", b"origin"), b"url").decode("utf-8")
    except Exception:  # no config, no origin, undecodable: no label
        return None
    return clean_url(url)


_SCP = re.compile(r"(?:[^@/\s]+@)?([A-Za-z0-9.-]+):(?!//)([A-Za-z0-9._~/-]+)")


def clean_url(url: str) -> str | None:
    try:
        return _clean_url(url.strip())
    except ValueError:  # a port out of range, a malformed IPv6 host
        return None


def _clean_url(url: str) -> str | None:
    scp = _SCP.fullmatch(url)
    if scp:
        host, path = scp.groups()
        return f"https://{host}/{path.removesuffix('.git').lstrip('/')}"[:512]
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http", "ssh", "git") or not parts.hostname:
        return None
    netloc = parts.hostname + (f":{parts.port}" if parts.port and parts.scheme in ("https", "http") else "")
    scheme = parts.scheme if parts.scheme in ("https", "http") else "https"
    clean = urlunsplit((scheme, netloc, parts.path.removesuffix(".git"), "", ""))
    return clean[:512] if re.fullmatch(r"[\x21-\x7e]+", clean) else None
