"""Per-run images for benches: copies of the stand-in builder and runtime images, and removal of
everything a bench built on them.

A copy is the stand-in plus one per-run LABEL: the same files, a new image ID that no other build
on the engine uses. Every image a bench builds on a copy (the seed template's builder-stage
layers, its std layer included; deployer's runtime images and their intermediate layers; the
seed pipeline's final images) has that copy in its parent chain, so

- no layer cache made by earlier runs or by tests on the shared engine helps a bench's build
  (a "cold" seed build is cold even without nocache), and
- `built()` finds exactly the bench's images: nothing of anyone else's is built on the copies.

`clear()` removes what was built (the classic builder's cache for the bench) and keeps the copies;
`remove_all()` removes the copies too. The stand-in images themselves are never touched.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import docker
import docker.errors

LABEL = "dev.deployer.bench.run"


class ScratchImages:
    def __init__(self, client: docker.DockerClient, run: str, tmpdir: Path) -> None:
        self.client = client
        self.run = run
        self.tmpdir = tmpdir
        self.roots: dict[str, str] = {}  # image ID -> tag of each per-run copy
        # Images a copy's build made between its source and itself (one per instruction but the
        # last), removed with the copies: never its source or anything below.
        self.between: list[str] = []

    def copy(self, source: str, tag: str, platform: str | None = None, env: dict[str, str] | None = None) -> str:
        """`source` plus this run's label (and `env` as ENV lines), tagged `tag`; returns its image ID."""
        context = Path(tempfile.mkdtemp(prefix="bench-image-", dir=self.tmpdir))
        lines = [f"FROM {source}", f"LABEL {LABEL}={self.run}", *(f"ENV {k}={v}" for k, v in (env or {}).items())]
        try:
            (context / "Dockerfile").write_text("\n".join(lines) + "\n")
            image, _ = self.client.images.build(path=str(context), tag=tag, platform=platform, pull=False, rm=True,
                                                forcerm=True)
        finally:
            shutil.rmtree(context)
        source_id = self.client.api.inspect_image(source)["Id"]
        parent = {row["Id"]: row.get("ParentId") or "" for row in self._rows()}
        step = parent.get(str(image.id), "")
        while step and step != source_id:
            self.between.append(step)
            step = parent.get(step, "")
        self.roots[str(image.id)] = tag
        return str(image.id)

    def _rows(self) -> list[dict[str, Any]]:
        return list(self.client.api.images(all=True))

    def built(self) -> set[str]:
        """Every image whose parent chain reaches a per-run copy, the copies excluded."""
        parent = {row["Id"]: row.get("ParentId") or "" for row in self._rows()}

        def on_roots(image_id: str) -> bool:
            seen = set()
            while image_id and image_id not in seen:
                if image_id in self.roots:
                    return True
                seen.add(image_id)
                image_id = parent.get(image_id, "")
            return False

        return {image_id for image_id in parent if image_id not in self.roots and on_roots(image_id)}

    def remove(self, ids: set[str], prune: bool = True) -> int:
        """Remove `ids` (every tag), children first: each pass removes the images no other image
        is built on; with `prune`, their untagged parents go too. Returns the number of
        images/layers the engine reports deleted."""
        deleted = 0
        pending = set(ids)
        while pending:
            rows = self._rows()
            pending &= {row["Id"] for row in rows}
            leaves = pending - {row.get("ParentId") for row in rows}
            if not leaves:
                break
            for image_id in leaves:
                try:
                    result = self.client.api.remove_image(image_id, force=True, noprune=not prune)
                except docker.errors.ImageNotFound:
                    pass  # pruned already, as an untagged parent of an image removed before it
                else:
                    deleted += sum(1 for entry in result or [] if "Deleted" in entry)
                pending.discard(image_id)
        if pending:
            raise RuntimeError(f"cannot remove {len(pending)} image(s) the bench built: other images are built on them: "
                               f"{sorted(pending)}")
        return deleted

    def clear(self) -> tuple[int, int]:
        """Remove everything built on the copies (keep the copies). Returns (images targeted,
        images/layers deleted); raises if any remains."""
        built = self.built()
        deleted = self.remove(built)
        left = self.built()
        if left:
            raise RuntimeError(f"cache not cleared: {len(left)} image(s) the bench built remain: {sorted(left)}")
        return len(built), deleted

    def remove_all(self) -> int:
        """End of run: everything built on the copies, then the copies (a copy may be made from
        another: children first), never their parents: the stand-ins stay."""
        deleted = self.remove(self.built())
        deleted += self.remove(set(self.roots) | set(self.between), prune=False)
        self.roots.clear()
        self.between.clear()
        return deleted
