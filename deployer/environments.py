"""environments: a deploy.yaml's `environments`, each an overlay on the file's own settings.

    environments:
      staging:    {account: "111111111111", region: us-east-1}
      production:
        account: "222222222222"
        region: eu-west-1
        memory: 512                        # every function of this file
        functions:
          greet: {memory: 1024}            # this one only

An environment is declared in the file whose functions it changes, beside them: the file's
`defaults`, `root` and relative paths are per file already, so one file still tells everything
about its functions, in every environment, and nothing in another file can change them.

Layers, each winning over the one before: `defaults`, the function's own settings, the
environment's settings (for every function of the file), its `functions.NAME` entry. Mappings
merge key by key (environment variables, tags, build settings, repository settings); any other
value (a list, a number, a string) replaces the one below it.

The result is a YamlDocument as if the file had been written for that environment: deployer.load
reads it as any other, and every value taken from an override keeps the override's position, so
a problem in it is reported where it is written.
"""

from __future__ import annotations

import copy
import difflib
import re
from typing import Any

from deployer.errors import Diagnostic
from deployer.paths import MAX_SHOWN, shown
from deployer.yamldoc import MAX_VALUES, YamlDocument, YamlPath

KEY = "environments"
# An environment's list of the others it may copy images from: not a setting of its functions.
COPY_KEY = "copy_images_from"
# Where `deployer --env` comes from when not given on the command line.
ENV_VARIABLE = "DEPLOYER_ENV"
# What the schema's environmentName allows (a saved plan's environment is checked against it).
NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")
# Values checked against the schema for one file, summed over its environments: each environment's
# merged document is checked whole, and `validate` checks every environment (up to 50). Aliases
# let a 20 KB file hold 100,000 values (deployer.yamldoc's bound), which checked 50 times took
# minutes; this bounds that work to seconds, far above what real files need (300 functions of 30
# values in 50 environments is 450,000).
MAX_CHECKED_VALUES = 500_000


def declared(doc: YamlDocument) -> tuple[str, ...]:
    """The names of the environments `doc` declares, as written (the schema checked them)."""
    environments = doc.data.get(KEY) if isinstance(doc.data, dict) else None
    return tuple(environments) if isinstance(environments, dict) else ()


def select(doc: YamlDocument, name: str | None) -> YamlDocument | list[Diagnostic]:
    """`doc` as environment `name` sees it, or the problems that prevent it. A file declaring
    environments is never read without one: its own settings are then the layer environments
    share, not a deployment of their own, and deploying them because `--env` was forgotten (a CI
    job's credentials reach some account) is the mistake environments are there to prevent. A
    file declaring none is not read under one either: it would be deployed as it is, labelled
    with an environment it knows nothing of."""
    names = declared(doc)
    if name is None:
        if not names:
            return doc
        return [doc.diagnostic((KEY,), f"this file declares environments ({_listed(names)}): choose one with --env NAME "
                                       f"(or {ENV_VARIABLE}=NAME)", key=True)]
    if not names:
        return [Diagnostic.at(doc.file, 0, 0, f"environment {shown(name)} is selected (--env or {ENV_VARIABLE}), but this file "
                                              f"declares no environments; add `{KEY}:` with {shown(name)} to it, or leave the "
                                              "file out of the paths given")]
    if name not in names:
        return [doc.diagnostic((KEY,), f"environment {shown(name)} is not declared in this file (it declares "
                                       f"{_listed(names)}){_did_you_mean(name, names)}", key=True)]
    problems = _unknown_functions(doc, name) + _unknown_copy_sources(doc, name) or _too_large(doc, len(doc.values), len(names))
    return problems or overlay(doc, name)


def copy_sources(doc: YamlDocument, name: str | None) -> tuple[str, ...]:
    """The environments of `doc` that environment `name` may copy images from (its COPY_KEY)."""
    environments = doc.data.get(KEY) if isinstance(doc.data, dict) and name is not None else None
    found = (environments.get(name) or {}).get(COPY_KEY) if isinstance(environments, dict) else None
    return tuple(found) if isinstance(found, list) else ()


def _unknown_copy_sources(doc: YamlDocument, name: str) -> list[Diagnostic]:
    """Each environment named in `name`'s COPY_KEY must be another one this file declares."""
    names = declared(doc)
    return [doc.diagnostic((KEY, name, COPY_KEY, index),
                           f"{KEY}.{name}.{COPY_KEY}: " + (f"{shown(other)} is this environment itself; list the others it may "
                                                           "copy images from" if other == name else
                                                           f"environment {shown(other)} is not declared in this file (it declares "
                                                           f"{_listed(names)}){_did_you_mean(other, names)}"))
            for index, other in enumerate(copy_sources(doc, name)) if other == name or other not in names]


def overlay(doc: YamlDocument, name: str) -> YamlDocument | list[Diagnostic]:
    """The document with environment `name` applied (see the module's docstring), without its
    `environments`; or a problem when the merged result would be too large to check."""
    data = copy.deepcopy(doc.data)  # the document read stays as it was, for the other environments
    environment: dict[str, Any] = data.pop(KEY)[name]
    here: YamlPath = (KEY, name)
    merged = _Merged(doc, data)
    shared = {key: value for key, value in environment.items() if key not in ("functions", COPY_KEY)}
    for key, value in shared.items():
        merged.apply(("defaults", key), value, here + (key,))
    own: dict[str, Any] = environment.get("functions") or {}
    for index, entry in enumerate(data["functions"]):
        for key in [k for k in shared if k in entry]:  # the environment wins over the function's own setting
            merged.apply(("functions", index, key), shared[key], here + (key,))
        for key, value in (own.get(entry["name"]) or {}).items():
            merged.apply(("functions", index, key), value, here + ("functions", entry["name"], key))
    if merged.count > MAX_VALUES:
        return [doc.diagnostic(here, f"environment {shown(name)}: more than {MAX_VALUES} values once merged into every "
                                     "function; a deploy.yaml needs far fewer", key=True)]
    return _too_large(doc, len(merged.values), len(declared(doc))) or YamlDocument(doc.file, data, merged.values, merged.keys)


def _too_large(doc: YamlDocument, values: int, count: int) -> list[Diagnostic]:
    """A problem when a document of `values` values, checked once for each of `count`
    environments, is more than MAX_CHECKED_VALUES to check (said the same whichever environment is
    selected, when `values` is the file's own: plan --env and validate agree)."""
    if values * count <= MAX_CHECKED_VALUES:
        return []
    return [doc.diagnostic((KEY,), f"{KEY}: {count} environments of {values} values each (once aliases (*name) are expanded "
                                   f"and overrides merged) are more than {MAX_CHECKED_VALUES} values to check; a deploy.yaml "
                                   "needs far fewer: copy fewer large mappings with aliases, or split the file", key=True)]


class _Merged:
    """The position tables of a document being overlaid, and how many values the overlay copied
    (an override applied to many functions counts for each)."""

    def __init__(self, doc: YamlDocument, data: dict[str, Any]) -> None:
        self.doc = doc
        self.data = data
        self.values = dict(doc.values)
        self.keys = dict(doc.keys)
        self.count = 0

    def apply(self, target: YamlPath, value: Any, source: YamlPath) -> None:
        """Merge `value` (written at `source`) into the data at `target`: key by key where both
        are mappings, else replacing it."""
        if self.count > MAX_VALUES:
            return  # overlay reports it: nothing more is worth copying
        parent: Any = self.data
        for step in target[:-1]:
            parent = parent.setdefault(step, {}) if isinstance(parent, dict) else parent[step]
        below = parent.get(target[-1])
        if isinstance(below, dict) and isinstance(value, dict):
            for child, sub in value.items():
                self.apply(target + (child,), sub, source + (child,))
            return
        parent[target[-1]] = copy.deepcopy(value)
        for old in _paths(below, target):  # what the replaced value held has no place any more
            self.values.pop(old, None)
            self.keys.pop(old, None)
        for path in (source, *_paths(value, source)):  # the override's own positions, below `target` now
            at = target + path[len(source):]
            if path in self.doc.values:
                self.values[at] = self.doc.values[path]
            if path in self.doc.keys:
                self.keys[at] = self.doc.keys[path]
            self.count += 1


def _paths(value: Any, at: YamlPath) -> list[YamlPath]:
    """The paths of the values below `value` (at `at`), `at` itself left out."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    found: list[YamlPath] = []
    for key, sub in children:
        found.append(at + (key,))
        found.extend(_paths(sub, at + (key,)))
    return found


def _unknown_functions(doc: YamlDocument, name: str) -> list[Diagnostic]:
    """An override of a function the file does not declare: a typo would otherwise be ignored,
    and the environment deployed without it."""
    functions = [entry["name"] for entry in doc.data["functions"]]
    own = doc.data[KEY][name].get("functions") or {}
    return [doc.diagnostic((KEY, name, "functions", other),
                           f"environment {shown(name)}: no function {shown(other)} in this file (it declares "
                           f"{_listed(functions)}){_did_you_mean(other, functions)}", key=True)
            for other in own if other not in functions]


def _did_you_mean(name: str, known: Any) -> str:
    """A hint at the known name closest to `name`: one it abbreviates (prod), else a near spelling."""
    if len(name) > MAX_SHOWN:
        return ""
    guess = [k for k in known if k.startswith(name)] or difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {shown(guess[0])}?" if len(guess) >= 1 else ""


def _listed(names: Any) -> str:
    listed = list(names)
    text = ", ".join(shown(n) for n in listed[:10])
    return text + (f" and {len(listed) - 10} more" if len(listed) > 10 else "")
