"""The seed pipeline's build, for benches to compare against: deployer's previous build, a
multi-stage Dockerfile (bench/seed.Dockerfile) built by the classic builder (docker SDK).

`build` assembles the function's context as deployer does (deployer.context.assemble: shared
modules copied, go.mod rewritten; the seed's cp/sed), writes the template into it as
Dockerfile.seed and runs docker build with the build args the template expects. The builder
stage runs with host networking, so that a module proxy on this machine's loopback (the local
cloud's GOPROXY) is reachable from its RUN steps, as it is from deployer's compile containers.

The GOPROXY build arg only counts when the builder image sets no GOPROXY of its own: the classic
builder lets an ENV of the base image override an ARG of the same name. The stand-in builder sets
GOPROXY=off (it is made for offline builds), so a bench whose seed builds need the module proxy
gives its builder copy ENV GOPROXY=<proxy> (bench/build_cache.py). deployer's compile containers
are given the function's go_env explicitly, which overrides the image's ENV either way.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from deployer.context import assemble
from deployer.spec import FunctionSpec

SEED_DOCKERFILE = Path(__file__).with_name("seed.Dockerfile")
DOCKERFILE_NAME = "Dockerfile.seed"


def engine_platform(client: Any) -> str:
    """os/arch of the engine (the seed template's BUILDPLATFORM)."""
    version = client.version()
    return f"{version['Os']}/{version['Arch']}"


def build_args(fn: FunctionSpec, build_platform: str, goproxy: str) -> dict[str, str]:
    """What the seed template expects (see the header of bench/seed.Dockerfile)."""
    return {
        "BUILDER_IMAGE": fn.build.builder_image,
        "RUNTIME_IMAGE": fn.build.runtime_image,
        "TARGETPLATFORM": fn.platform,
        "TARGETARCH": fn.platform.split("/", 1)[1],
        "GO_BUILD_FLAGS": shlex.join(fn.build.go_build_flags),
        "GOPROXY": goproxy,
        "BUILDPLATFORM": build_platform,
    }


def build(client: Any, fn: FunctionSpec, tag: str, *, nocache: bool, goproxy: str, tmpdir: Path) -> tuple[float, str]:
    """Assemble `fn`'s context in a temporary directory under `tmpdir`, build it with the seed
    template and tag the image `tag`. Returns (wall seconds, assembly included; image ID)."""
    started = time.perf_counter()
    context = Path(tempfile.mkdtemp(prefix="bench-seed-ctx-", dir=tmpdir))
    try:
        ctx = assemble(fn, context / "ctx")
        shutil.copyfile(SEED_DOCKERFILE, ctx.path / DOCKERFILE_NAME)
        args = build_args(fn, engine_platform(client), goproxy)
        image_id = None
        tail: list[str] = []
        for chunk in client.api.build(path=str(ctx.path), dockerfile=DOCKERFILE_NAME, tag=tag, buildargs=args, rm=True,
                                      forcerm=True, pull=False, nocache=nocache, network_mode="host", decode=True):
            if "error" in chunk:
                raise RuntimeError(f"seed pipeline: docker build of {fn.name} failed: {chunk['error']}\n" + "".join(tail[-20:]))
            tail.append(str(chunk.get("stream", "")))
            image_id = chunk.get("aux", {}).get("ID", image_id)
        if not image_id:
            raise RuntimeError(f"seed pipeline: docker build of {fn.name} gave no image ID")
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return time.perf_counter() - started, str(image_id)
