"""The ECR gateway: images by tag or digest, repositories and their settings (created, read,
configured), the registry login, and the listings and deletions prune makes. The shared
machinery is deployer.aws."""

from __future__ import annotations

import base64
from typing import Any


from deployer.errors import AwsError, Diagnostic
from deployer.registry import RegistryLogin
from deployer.repository_config import (
    DEFAULT_ENCRYPTION,
    DEFAULT_UNTAGGED_EXPIRY_DAYS,
    ObservedRepository,
    RepositoryConfig,
    lifecycle_days,
    lifecycle_policy,
    policy_with_pulls,
    pulling_accounts,
)
from deployer.spec import EcrRepository
from deployer.state import (
    ImageState,
    StoredImage,
)
from deployer.aws import (
    _DIGEST,
    _REPOSITORY_ARN,
    MAX_POLICY,
    UNREADABLE_TAG,
    BATCH_DELETE,
    Clients,
    _json,
    _listing,
    _mapping,
    _matching,
    _tags,
    _text,
    _token,
    _instant,
    _unreadable_entry,
    call,
)


class EcrGateway:
    """ECR, every call naming the repository's registry (its account): without registryId ECR
    would look in the caller's own registry, not in the one the repository URI names."""

    def __init__(self, clients: Clients, region: str) -> None:
        self._client = clients.client("ecr", region)
        self._region = region

    def _where(self, repository: EcrRepository) -> str:
        return f"repository {repository.name} ({repository.account}, {self._region})"

    def describe_image(self, repository: EcrRepository, tag: str) -> ImageState:
        try:
            response = call(lambda: self._client.describe_images(registryId=repository.account, repositoryName=repository.name,
                                                                 imageIds=[{"imageTag": tag}]),
                            "ecr:DescribeImages", self._where(repository))
        except AwsError as exc:
            if exc.code == "RepositoryNotFoundException":
                return ImageState(repository_exists=False)
            if exc.code == "ImageNotFoundException":
                return ImageState(repository_exists=True)
            raise
        details = response.get("imageDetails") or []
        if not details:
            return ImageState(repository_exists=True)
        return ImageState(True, _matching(details[0].get("imageDigest"), _DIGEST), _token(details[0].get("imageManifestMediaType")))

    def has_image(self, repository: EcrRepository, digest: str) -> bool:
        """Whether ECR holds the image `digest` ("sha256:...") in `repository`."""
        try:
            response = call(lambda: self._client.describe_images(registryId=repository.account, repositoryName=repository.name,
                                                                 imageIds=[{"imageDigest": digest}]),
                            "ecr:DescribeImages", self._where(repository))
        except AwsError as exc:
            if exc.code in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return False
            raise
        return any(isinstance(d, dict) and d.get("imageDigest") == digest for d in response.get("imageDetails") or ())

    def create_repository(self, repository: EcrRepository, config: RepositoryConfig) -> None:
        """Create `repository` with `config` (deploy.yaml's settings, the secure defaults filling
        the rest: RepositoryConfig.for_creation). One that exists already is fine: another
        function of this apply made it, someone did since the plan, or our own first attempt
        did and its answer was lost (botocore's retry then hears AlreadyExists). The lifecycle
        policy and pull statements are set then too, unless it has a lifecycle policy already (its
        maker set one: left as it is); what else differs, the next plan shows. ECR refuses to
        create one in another account's registry (never another account's name in the caller's)."""
        settings = config.for_creation()
        encryption: dict[str, str] = {"encryptionType": settings.encryption or DEFAULT_ENCRYPTION}
        if settings.kms_key:
            encryption["kmsKey"] = settings.kms_key
        extra: dict[str, Any] = {"tags": [{"Key": k, "Value": v} for k, v in sorted(settings.tags.items())]} if settings.tags else {}
        try:
            call(lambda: self._client.create_repository(
                registryId=repository.account, repositoryName=repository.name, imageTagMutability=settings.tag_mutability,
                imageScanningConfiguration={"scanOnPush": settings.scan_on_push}, encryptionConfiguration=encryption, **extra,
            ), "ecr:CreateRepository", self._where(repository))
        except AwsError as exc:
            if exc.code != "RepositoryAlreadyExistsException":
                raise
            if self._lifecycle(repository) != (None, False):
                return
        self.put_lifecycle_policy(repository, settings.untagged_expiry_days or DEFAULT_UNTAGGED_EXPIRY_DAYS)
        if settings.lambda_pull_accounts:
            self.set_pull_accounts(repository, settings.lambda_pull_accounts, self._policy(repository))

    def observe_repository(self, repository: EcrRepository, config: RepositoryConfig) -> ObservedRepository:
        """ECR's settings of `repository`, read only as far as `config` manages them (a lifecycle
        policy, the tags and the policy each take a call of their own)."""
        where = self._where(repository)
        response = call(lambda: self._client.describe_repositories(registryId=repository.account, repositoryNames=[repository.name]),
                        "ecr:DescribeRepositories", where)
        found = [r for r in response.get("repositories") or () if isinstance(r, dict) and r.get("repositoryName") == repository.name]
        if not found:
            raise AwsError(Diagnostic("ECR did not describe the repository it was asked about; check the endpoint (AWS_ENDPOINT_URL_ECR)",
                                      operation="ecr:DescribeRepositories", resource=where))
        described = found[0]
        encryption, scanning = _mapping(described.get("encryptionConfiguration")), _mapping(described.get("imageScanningConfiguration"))
        arn = _matching(described.get("repositoryArn"), _REPOSITORY_ARN)
        wanted = set(config.declared)
        days, other = (self._lifecycle(repository) if "untagged_expiry_days" in wanted else (None, False))
        return ObservedRepository(
            arn=arn,
            scan_on_push=scanning.get("scanOnPush") is True,
            tag_mutability=_token(described.get("imageTagMutability")) or "(unknown)",
            encryption=_token(encryption.get("encryptionType")) or DEFAULT_ENCRYPTION,
            kms_key=_text(encryption.get("kmsKey")),
            untagged_expiry_days=days,
            other_lifecycle=other,
            lambda_pull_accounts=(pulling_accounts(self._policy(repository), self._region)
                                  if "lambda_pull_accounts" in wanted else ()),
            tags=self._tags(repository, arn) if "tags" in wanted else {},
        )

    def _lifecycle(self, repository: EcrRepository) -> tuple[int | None, bool]:
        """(deployer's days, False), or (None, whether the repository has another policy)."""
        try:
            response = call(lambda: self._client.get_lifecycle_policy(registryId=repository.account, repositoryName=repository.name),
                            "ecr:GetLifecyclePolicy", self._where(repository))
        except AwsError as exc:
            if exc.code == "LifecyclePolicyNotFoundException":
                return None, False
            raise
        days = lifecycle_days(_json(response.get("lifecyclePolicyText")))
        return days, days is None

    def _policy(self, repository: EcrRepository) -> Any:
        """The repository policy, parsed (None: it has none). One that cannot be read is an
        error: rewriting it would drop the statements of others."""
        try:
            response = call(lambda: self._client.get_repository_policy(registryId=repository.account, repositoryName=repository.name),
                            "ecr:GetRepositoryPolicy", self._where(repository))
        except AwsError as exc:
            if exc.code == "RepositoryPolicyNotFoundException":
                return None
            raise
        policy = _json(response.get("policyText"))
        if not isinstance(policy, dict):
            raise AwsError(Diagnostic("the repository policy is not a JSON object deployer can read (or is larger than "
                                      f"{MAX_POLICY} bytes); deployer will not rewrite it: fix it, or remove lambda_pull_accounts",
                                      operation="ecr:GetRepositoryPolicy", resource=self._where(repository)))
        return policy

    def _tags(self, repository: EcrRepository, arn: str | None) -> dict[str, str]:
        response = call(lambda: self._client.list_tags_for_resource(resourceArn=self._arn(repository, arn)),
                        "ecr:ListTagsForResource", self._where(repository))
        tags = response.get("tags") if isinstance(response.get("tags"), list) else []
        return _tags({t.get("Key"): t.get("Value") for t in tags if isinstance(t, dict)})

    def _arn(self, repository: EcrRepository, arn: str | None) -> str:
        if arn is None:
            raise AwsError(Diagnostic("the answer holds no usable repositoryArn, which the tag calls need; check the endpoint "
                                      "(AWS_ENDPOINT_URL_ECR)", operation="ecr:DescribeRepositories", resource=self._where(repository)))
        return arn

    def configure_repository(self, repository: EcrRepository, config: RepositoryConfig, keys: tuple[str, ...]) -> None:
        """Make ECR hold `config` for the settings `keys` names (never an encryption key: ECR
        cannot change those). Each call sets a value, so a lost answer is safely sent again; the
        policy is read again first, so that statements others wrote since the plan are kept."""
        where = self._where(repository)
        registry = {"registryId": repository.account, "repositoryName": repository.name}
        if "scan_on_push" in keys:
            call(lambda: self._client.put_image_scanning_configuration(
                **registry, imageScanningConfiguration={"scanOnPush": bool(config.scan_on_push)}),
                "ecr:PutImageScanningConfiguration", where)
        if "tag_mutability" in keys:
            call(lambda: self._client.put_image_tag_mutability(**registry, imageTagMutability=config.tag_mutability),
                 "ecr:PutImageTagMutability", where)
        if "untagged_expiry_days" in keys and config.untagged_expiry_days is not None:
            self.put_lifecycle_policy(repository, config.untagged_expiry_days)
        if "lambda_pull_accounts" in keys:
            current = self._policy(repository)
            self.set_pull_accounts(repository, config.lambda_pull_accounts or (), current)
        if "tags" in keys and config.tags:
            tags = [{"Key": k, "Value": v} for k, v in sorted(config.tags.items())]
            target = self._arn(repository, self.observe_repository(repository, RepositoryConfig()).arn)
            call(lambda: self._client.tag_resource(resourceArn=target, tags=tags), "ecr:TagResource", where)

    def put_lifecycle_policy(self, repository: EcrRepository, days: int) -> None:
        call(lambda: self._client.put_lifecycle_policy(registryId=repository.account, repositoryName=repository.name,
                                                        lifecyclePolicyText=lifecycle_policy(days)),
             "ecr:PutLifecyclePolicy", self._where(repository))

    def set_pull_accounts(self, repository: EcrRepository, accounts: tuple[str, ...], current: Any) -> None:
        """Write the repository policy with deployer's statements for exactly `accounts`, every
        other statement of `current` (the policy read just before) kept."""
        policy = policy_with_pulls(current, accounts, self._region)
        call(lambda: self._client.set_repository_policy(registryId=repository.account, repositoryName=repository.name,
                                                         policyText=policy),
             "ecr:SetRepositoryPolicy", self._where(repository))

    def login(self) -> RegistryLogin:
        response = call(lambda: self._client.get_authorization_token(), "ecr:GetAuthorizationToken", f"ECR in {self._region}")
        try:
            data = response["authorizationData"][0]
            username, _, password = base64.b64decode(data["authorizationToken"], validate=True).decode().partition(":")
        except (KeyError, IndexError, TypeError, ValueError) as exc:  # binascii.Error, UnicodeDecodeError are ValueErrors
            raise AwsError(Diagnostic("the answer holds no usable authorization token; check the endpoint (AWS_ENDPOINT_URL_ECR)",
                                      operation="ecr:GetAuthorizationToken", resource=f"ECR in {self._region}")) from exc
        return RegistryLogin(username, password, str(data.get("proxyEndpoint") or ""))

    # -- prune: every image of a repository, and deleting some --------------------------------

    def list_images(self, repository: EcrRepository) -> list[StoredImage]:
        """Every image of `repository` (DescribeImages, every page), one per digest with all its
        tags. An entry without a readable digest is an error, as for the Lambda listings."""
        where = self._where(repository)
        found: dict[str, StoredImage] = {}
        for entry in _listing(lambda more: self._client.describe_images(registryId=repository.account, repositoryName=repository.name,
                                                                        **more),
                              "imageDetails", "nextToken", "nextToken", "ecr:DescribeImages", where):
            digest = _matching(entry.get("imageDigest"), _DIGEST)
            tags = entry.get("imageTags") or []
            if digest is None or not isinstance(tags, list):
                raise AwsError(_unreadable_entry("ecr:DescribeImages", where, "an image digest and its tags"))
            # A tag that is no short printable string is kept as a marker that is no content tag.
            named = tuple(_token(tag) or UNREADABLE_TAG for tag in tags)
            before = found.get(digest)
            pushed = [at for at in (before.pushed_at if before else None, _instant(entry.get("imagePushedAt"))) if at]
            found[digest] = StoredImage(digest, tuple(dict.fromkeys((*(before.tags if before else ()), *named))),
                                        _token(entry.get("imageManifestMediaType")), _token(entry.get("artifactMediaType")),
                                        max(pushed, default=None))
        return list(found.values())

    def batch_delete_image(self, repository: EcrRepository, digests: list[str]) -> tuple[list[str], list[Diagnostic]]:
        """Delete the images `digests` (with all their tags), BATCH_DELETE at a time. Returns the
        digests gone (deleted, or found gone already) and a problem per image ECR did not delete."""
        where = self._where(repository)
        gone: list[str] = []
        problems: list[Diagnostic] = []
        for start in range(0, len(digests), BATCH_DELETE):
            asked = digests[start:start + BATCH_DELETE]
            ids = [{"imageDigest": digest} for digest in asked]
            response = call(lambda: self._client.batch_delete_image(registryId=repository.account, repositoryName=repository.name,
                                                                    imageIds=ids),
                            "ecr:BatchDeleteImage", where)
            deleted = {_matching(_mapping(i).get("imageDigest"), _DIGEST) for i in response.get("imageIds") or ()}
            for failure in map(_mapping, response.get("failures") or ()):
                code = _token(failure.get("failureCode")) or "Unknown"
                digest = _matching(_mapping(failure.get("imageId")).get("imageDigest"), _DIGEST)
                if code == "ImageNotFound":
                    deleted.add(digest)
                    continue
                problems.append(Diagnostic(f"{code}: {_text(failure.get('failureReason')) or ''} ({digest or 'an image'} was not deleted)",
                                           operation="ecr:BatchDeleteImage", resource=where, code=code))
            gone += [digest for digest in asked if digest in deleted]
        return gone, problems
