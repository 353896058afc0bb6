"""release_settings: a deploy.yaml function's `release` mapping, read into spec.ReleaseSettings, with
the checks the schema cannot make: the smoke test's event file (a regular file inside the repository
root, JSON, at most Lambda's payload size) and the keys that need an alias.

The schema has checked each value's shape. The function's mapping replaces the default's as a whole
(as image_config does): `release: {publish: false}` on a function opts it out of defaults.release.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deployer.errors import Diagnostic
from deployer.paths import FileTooLarge, RefusedFile, display, read_inside, shown
from deployer.spec import DEFAULT_KEEP_VERSIONS, ReleaseSettings, SmokeTest
from deployer.yamldoc import YamlDocument, YamlPath

# Lambda's bound on a synchronous invocation's payload.
MAX_EVENT_BYTES = 6 * 1024 * 1024


def declared_release(doc: YamlDocument, at: YamlPath, entry: dict[str, Any], defaults: dict[str, Any], base: Path, root: Path,
                     problems: list[Diagnostic]) -> ReleaseSettings | None:
    """The function's release settings (else the defaults'), or None: no release (publish off)."""
    where: YamlPath = at + ("release",) if "release" in entry else ("defaults", "release")
    value: dict[str, Any] | None = entry.get("release", defaults.get("release"))
    if value is None or value.get("publish", True) is False:
        return None
    name = entry["name"]
    alias = value.get("alias")
    smoke = value.get("smoke_test")
    if smoke is not None and alias is None:
        _once(problems, doc.diagnostic(where + ("smoke_test",), f"function '{name}': a smoke test gates moving an alias; "
                                                               "add `alias` (for example `alias: live`), or remove smoke_test"))
        return None
    test = None
    if smoke is not None:
        event = _event(doc, where + ("smoke_test", "event"), name, base / str(smoke["event"]), root, problems)
        if event is None:
            return None
        expect = smoke.get("expect") or {}
        test = SmokeTest(base / str(smoke["event"]), event, expect.get("field"), expect.get("equals"))
    return ReleaseSettings(alias=alias, keep=int(value.get("keep", DEFAULT_KEEP_VERSIONS)), smoke_test=test)


def _event(doc: YamlDocument, at: YamlPath, name: str, path: Path, root: Path, problems: list[Diagnostic]) -> bytes | None:
    try:
        data = read_inside(path, root, limit=MAX_EVENT_BYTES)
    except FileTooLarge:
        _once(problems, doc.diagnostic(at, f"function '{name}': smoke test event {shown(display(path))} is larger than Lambda's "
                                           f"limit of {MAX_EVENT_BYTES} bytes"))
        return None
    except RefusedFile as exc:
        _once(problems, doc.diagnostic(at, f"function '{name}': smoke test event {shown(display(path))}: {exc.strerror}; give a "
                                           "regular file inside the repository"))
        return None
    except OSError as exc:
        _once(problems, doc.diagnostic(at, f"function '{name}': smoke test event {shown(display(path))}: {exc.strerror or exc}"))
        return None
    try:
        json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        _once(problems, doc.diagnostic(at, f"function '{name}': smoke test event {shown(display(path))} is not a JSON document; "
                                           "Lambda takes a JSON event"))
        return None
    return data


def _once(problems: list[Diagnostic], problem: Diagnostic) -> None:
    if problem not in problems:
        problems.append(problem)
