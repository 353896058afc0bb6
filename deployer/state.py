"""The state of a function the planner compares: what deploy.yaml asks for (Desired) and what
AWS reports (Observed).

Plain frozen data, no I/O, so that planner tests can state any situation as values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping

from deployer.function_config import FunctionConfig, ObservedConfig
from deployer.layout import Layout
from deployer.repository_config import ObservedRepository, RepositoryConfig
from deployer.spec import EcrRepository, ReleaseSettings

# Lambda accepts only single-platform manifests; an index / manifest list is rejected.
SINGLE_PLATFORM_MEDIA_TYPES = frozenset({
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
})


@dataclass(frozen=True)
class Desired:
    """What deploy.yaml asks for one function. `source_digest` names the image's inputs
    ("sha256:<hex>"); `content_tag` is the ECR tag derived from it."""

    name: str
    region: str
    repository: EcrRepository  # in `region`
    content_tag: str
    source_digest: str
    architecture: str  # Lambda's name: arm64 or x86_64
    platform: str  # OCI platform: linux/arm64 or linux/amd64
    spec_file: str  # the deploy.yaml that declares the function, for messages and saved plans
    # The declared configuration, resolved (secrets included): in memory only, never in a plan
    # file; a saved plan holds its changes (deployer.function_config.FieldChange) instead.
    config: FunctionConfig = field(default_factory=FunctionConfig, compare=False)
    create_repository: bool = field(default=True, compare=False)  # deploy.yaml allows creating a missing repository
    # The repository's declared settings, with the accounts that must be able to pull from it
    # (not saved either: a saved plan holds their changes).
    repository_config: RepositoryConfig = field(default_factory=RepositoryConfig, compare=False)
    release: ReleaseSettings | None = field(default=None, compare=False)  # None: $LATEST updated in place
    # The digest of each input of the image (deployer.image_inputs), to explain a change; not saved.
    inputs: Mapping[str, str] = field(default_factory=dict, compare=False)
    # The build context's layout the digests were made from (None in a saved plan): which files it
    # holds, for the plan's list of the files changed since the running image's commit.
    layout: Layout | None = field(default=None, compare=False, repr=False)

    @property
    def repository_uri(self) -> str:
        """ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME: what Lambda is given."""
        return self.repository.uri

    @property
    def registry(self) -> str:
        """ACCOUNT.dkr.ecr.REGION.amazonaws.com: the registry host, what a login is for."""
        return self.repository.registry

    @property
    def repository_name(self) -> str:
        """The repository's name in ECR (what DescribeImages is asked by)."""
        return self.repository.name


@dataclass(frozen=True)
class FunctionState:
    """Lambda GetFunction, reduced to what planning needs. `exists` False means NotFound.
    `code_sha256` is the running image's manifest digest in hex (no "sha256:" prefix)."""

    exists: bool
    package_type: str | None = None
    code_sha256: str | None = None
    architectures: tuple[str, ...] = ()
    state: str | None = None
    last_update_status: str | None = None
    last_update_reason: str | None = None
    revision_id: str | None = None
    config: ObservedConfig = field(default_factory=ObservedConfig)
    arn: str | None = None  # Configuration.FunctionArn: what TagResource names; None when absent or malformed
    image_uri: str | None = None  # Code.ImageUri: the image as the function was given it (repository@digest or :tag)

    @property
    def running_digest(self) -> str | None:
        return f"sha256:{self.code_sha256}" if self.code_sha256 else None


@dataclass(frozen=True)
class AliasState:
    """An alias of a function (GetAlias) and the version it points at: that version's image (hex,
    as FunctionState.code_sha256), configuration and description. `exists` False: no such alias."""

    exists: bool
    version: str | None = None
    revision_id: str | None = None
    code_sha256: str | None = None
    config: ObservedConfig = field(default_factory=ObservedConfig)
    description: str | None = None  # the version's
    rolled_back: bool = False  # the alias's own description says `deployer rollback` put it there


@dataclass(frozen=True)
class VersionState:
    """A published version (ListVersionsByFunction): its number, image (hex, as CodeSha256), when
    it was made (Lambda's LastModified), and its description (a release records the alias's
    version before it there)."""

    version: str
    code_sha256: str | None
    last_modified: str | None
    description: str


@dataclass(frozen=True)
class Invoked:
    """A synchronous invocation's answer: the payload (bounded), Lambda's FunctionError (None: the
    function answered), and the tail of its log. All of it foreign: shown inert."""

    payload: bytes
    function_error: str | None
    log_tail: str


@dataclass(frozen=True)
class ImageState:
    """ECR DescribeImages for the content tag. `digest` None: no image has that tag (yet)."""

    repository_exists: bool
    digest: str | None = None
    media_type: str | None = None

    @property
    def single_platform(self) -> bool:
        return self.media_type in SINGLE_PLATFORM_MEDIA_TYPES


@dataclass(frozen=True)
class ImageElsewhere:
    """The image of a function's source found in another environment's repository (of the same
    function, as the same deploy.yaml declares it there): its content tag holds `digest`, a
    single-platform image. Copied by digest, it keeps its digest: nothing is built again."""

    environment: str
    repository: EcrRepository
    digest: str


@dataclass(frozen=True)
class Observed:
    function: FunctionState
    image: ImageState
    repository: ObservedRepository | None = None  # None: not read (nothing of it managed, or it does not exist)
    alias: AliasState | None = None  # None: not read (no alias declared, or no function)
    # Only looked for when the content tag is missing here and the file declares other environments.
    elsewhere: ImageElsewhere | None = None


# -- what prune reads: every function's versions and aliases, every image of a repository --------

@dataclass(frozen=True)
class FunctionListing:
    """A function of the region (ListFunctions): its name and package type (None: not reported)."""

    name: str
    package_type: str | None


@dataclass(frozen=True)
class VersionImage:
    """A version of a function (ListVersionsByFunction), $LATEST included: `version` is "$LATEST"
    or a number; `image` False only for a Zip package; `code_sha256` the image's manifest digest in
    hex, None when Lambda reports none (for an image version: unknown, never "unused")."""

    version: str
    code_sha256: str | None
    image: bool = True

    @property
    def digest(self) -> str | None:
        return f"sha256:{self.code_sha256}" if self.code_sha256 else None


@dataclass(frozen=True)
class AliasTarget:
    """An alias (ListAliases) and every version it sends invocations to: its FunctionVersion
    first, then the versions of its RoutingConfig (a weighted alias)."""

    name: str
    versions: tuple[str, ...]


@dataclass(frozen=True)
class StoredImage:
    """An image of an ECR repository (DescribeImages): its digest ("sha256:<hex>"), every tag on
    it, its manifest's media type and its artifact (config) media type, None when not reported, and
    when it was pushed (imagePushedAt, timezone-aware; None when not reported)."""

    digest: str
    tags: tuple[str, ...] = ()
    media_type: str | None = None
    artifact_type: str | None = None
    pushed_at: datetime | None = None
