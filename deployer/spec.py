"""The typed, validated form of deploy.yaml files: what the user asks for.

A `Spec` is produced by `deployer.load` after schema and semantic validation, so every field here
holds a checked value with defaults filled in. Paths are absolute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from deployer.errors import DeployerError
from deployer.function_config import FunctionConfig
from deployer.repository_config import RepositoryConfig

SUPPORTED_PLATFORMS = ("linux/arm64", "linux/amd64")

# The names a deploy.yaml file may have (what a directory is searched for; what a build context
# leaves out).
SPEC_FILE_NAMES = ("deploy.yaml", "deploy.yml")

# An ECR repository URI: ACCOUNT.dkr.ecr.REGION.amazonaws.com[.cn]/NAME.
REPOSITORY_URI = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.(?P<domain>amazonaws\.com(?:\.cn)?)/(?P<name>.+)$")

# The seed's images. The runtime base depends on the target architecture.
DEFAULT_BUILDER_IMAGE = "golang:1.24-alpine"
DEFAULT_RUNTIME_IMAGES = {
    "linux/arm64": "public.ecr.aws/lambda/provided:al2-arm64",
    "linux/amd64": "public.ecr.aws/lambda/provided:al2-x86_64",
}
DEFAULT_GO_BUILD_FLAGS = ("-trimpath", "-ldflags=-s -w")

# Lambda names architectures differently from OCI platforms.
LAMBDA_ARCHITECTURES = {"linux/arm64": "arm64", "linux/amd64": "x86_64"}


@dataclass(frozen=True)
class Location:
    """Where a value was written: 1-based line and column in a deploy.yaml file."""

    file: Path
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


def ecr_domain(region: str) -> str:
    """The DNS suffix of ECR registries in `region`: the China regions (cn-north-1,
    cn-northwest-1) form their own partition, served under amazonaws.com.cn."""
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"


@dataclass(frozen=True)
class EcrRepository:
    """An ECR repository whose account is known: the one form every later stage uses."""

    account: str
    region: str
    name: str

    @property
    def registry(self) -> str:
        """ACCOUNT.dkr.ecr.REGION.amazonaws.com: the registry host, what a login is for."""
        return f"{self.account}.dkr.ecr.{self.region}.{ecr_domain(self.region)}"

    @property
    def uri(self) -> str:
        """What Lambda is given (with a digest) and images are pushed to (with a tag)."""
        return f"{self.registry}/{self.name}"

    @classmethod
    def parse(cls, uri: str) -> EcrRepository | None:
        """The repository of an ECR URI; None when `uri` is not one (or names the wrong domain)."""
        match = REPOSITORY_URI.match(uri)
        if match is None or match["domain"] != ecr_domain(match["region"]):
            return None
        return cls(match["account"], match["region"], match["name"])


@dataclass(frozen=True)
class RepositoryRef:
    """An ECR repository as deploy.yaml gives it. `account` is None when deploy.yaml gave only a
    name and no account: it is then resolved from the caller's identity (STS) when AWS is first
    asked."""

    name: str
    region: str
    account: str | None
    create: bool = True  # a missing repository is created (with secure settings) unless deploy.yaml says not to
    config: RepositoryConfig = RepositoryConfig()  # the declared settings

    def resolved(self, account: str | None = None) -> EcrRepository:
        acct = self.account or account
        if acct is None:
            raise ValueError(f"repository {self.name}: account unknown")
        return EcrRepository(acct, self.region, self.name)


# The Go environment the built-in Go build sets unless deploy.yaml says otherwise: never download a
# toolchain (the builder image's is the one reviewed), and verify go.sum (never rewrite it).
DEFAULT_GO_ENV = {"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
# Where netrc credentials come from unless deploy.yaml names another variable.
DEFAULT_NETRC_ENV = "DEPLOYER_NETRC"


@dataclass(frozen=True)
class BuildSettings:
    """How a function's image is built. `dockerfile` None means the built-in Go build (compile in
    a container of the builder image, copy the binary onto the runtime image); `go_env` is its Go
    environment as deploy.yaml gives it (DEFAULT_GO_ENV fills the rest), `netrc_env` the variable
    holding credentials for private modules. `build_args` go to a Dockerfile build only.
    `shared_modules` None means "discover from go.mod replace directives"; a tuple lists extra
    module directories to include on top of those discovered."""

    source: Path
    dockerfile: Path | None = None
    builder_image: str = DEFAULT_BUILDER_IMAGE
    runtime_image: str = DEFAULT_RUNTIME_IMAGES["linux/arm64"]
    go_build_flags: tuple[str, ...] = DEFAULT_GO_BUILD_FLAGS
    build_args: Mapping[str, str] = field(default_factory=dict)
    shared_modules: tuple[Path, ...] | None = None
    go_env: Mapping[str, str] = field(default_factory=dict)
    netrc_env: str = DEFAULT_NETRC_ENV

    @property
    def compiles_go(self) -> bool:
        """Whether the built-in Go build makes the image (no Dockerfile of the user's)."""
        return self.dockerfile is None

    def go_environment(self) -> dict[str, str]:
        """The Go environment of the compile: DEFAULT_GO_ENV overridden by deploy.yaml's."""
        return {**DEFAULT_GO_ENV, **self.go_env}


# Versions a release keeps by default (prune deletes older ones no alias points at).
DEFAULT_KEEP_VERSIONS = 3


@dataclass(frozen=True)
class SmokeTest:
    """The event a new version is invoked with before its alias moves (`event`, the file's bytes,
    JSON of at most Lambda's payload size), and what the answer must hold besides not being a
    function error: `expect_field` (a dot path into the JSON response) equal to `expect_value`."""

    event_file: Path
    event: bytes
    expect_field: str | None = None
    expect_value: object = None


@dataclass(frozen=True)
class ReleaseSettings:
    """How a function is released: each change published as a version; `alias` (when set) moved
    to it, after `smoke_test` (when set) passed on it; `keep` versions kept by prune."""

    alias: str | None = None
    keep: int = DEFAULT_KEEP_VERSIONS
    smoke_test: SmokeTest | None = None


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function to deploy. Invariant: `platform` is in SUPPORTED_PLATFORMS."""

    name: str
    region: str
    repository: RepositoryRef
    platform: str
    build: BuildSettings
    root: Path  # repository root: no replace target may lie outside it
    location: Location  # where the function's entry starts, for messages
    config: FunctionConfig = FunctionConfig()  # the declared configuration keys, from_env unresolved
    release: ReleaseSettings | None = None  # None: no versions published, $LATEST updated in place

    @property
    def architecture(self) -> str:
        """The Lambda `Architectures` value for this function's platform."""
        return LAMBDA_ARCHITECTURES[self.platform]


@dataclass(frozen=True)
class AllowedAccounts:
    """A file's allowed_accounts, and where the list in force is written."""

    accounts: tuple[str, ...]
    location: Location


@dataclass(frozen=True)
class Spec:
    """All functions of all deploy.yaml files given, in a stable order (by name), as the
    environment `environment` has them (None: the files declare no environments)."""

    functions: tuple[FunctionSpec, ...]
    files: tuple[Path, ...]
    environment: str | None = None
    # By file (as in `files`): the other environments `environment` may copy images from.
    copy_images_from: Mapping[Path, tuple[str, ...]] = field(default_factory=dict)
    # By file: the accounts whose credentials may act on its functions (defaults.allowed_accounts,
    # or the environment's), where that list is written; a file without one is absent.
    allowed_accounts: Mapping[Path, AllowedAccounts] = field(default_factory=dict)

    def account_refused(self, account: str) -> str | None:
        """Why credentials of `account` may not act on these functions, or None."""
        for allowed in self.allowed_accounts.values():
            if account not in allowed.accounts:
                where = f" ({self.environment})" if self.environment is not None else ""
                return (f"{allowed.location}: the credentials are of AWS account {account}, which allowed_accounts{where} "
                        f"does not list ({', '.join(allowed.accounts)}); run with the credentials of an allowed account")
        return None

    def function(self, name: str) -> FunctionSpec:
        for fn in self.functions:
            if fn.name == name:
                return fn
        known = ", ".join(f.name for f in self.functions) or "none"
        raise DeployerError(f"no function named {name!r} in {len(self.files)} deploy.yaml file(s); known: {known}")
