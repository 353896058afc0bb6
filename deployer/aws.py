"""Gateways to Lambda, ECR and STS: thin typed wrappers that return the project's own data and turn
botocore errors into AwsError messages that name the call, the resource and what to do.

Clients are made once per (service, region) and shared by threads (boto3 clients are thread-safe).
botocore's "standard" retry mode absorbs throttling and transient 5xx; endpoints, profiles and
credentials come from boto3's standard configuration (AWS_PROFILE, AWS_ENDPOINT_URL*, ...).

Every call is bounded in time: an endpoint that accepts connections and never answers (or never
accepts them) fails a call within CALL_BOUND_SECONDS, with a message naming the endpoint.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import threading
import time
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.exceptions

from deployer.errors import AwsError, Diagnostic
from deployer.function_config import DEFAULT_EPHEMERAL_STORAGE, DEFAULT_MEMORY, DEFAULT_TIMEOUT, DEFAULT_TRACING, TRACING_MODES, ObservedConfig
from deployer.registry import RegistryLogin
from deployer.state import FunctionState, ImageState

T = TypeVar("T")

# A black-holed endpoint costs at most ATTEMPTS * (a timeout) plus the backoff between attempts
# (standard mode: at most 1 s, then 2 s): 3 * 8 + 3 = 27 s for one that accepts and never
# answers, 3 * 5 + 3 = 18 s for one that never accepts, under CALL_BOUND_SECONDS. The read timeout
# is per socket read, not per call: Lambda, ECR and STS answer these calls within a second or
# two. 3 attempts is the AWS SDKs' standard; throttling retries beyond it are ours (run_function.py).
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 8
ATTEMPTS = 3
CALL_BOUND_SECONDS = 30

RETRY_CONFIG = botocore.config.Config(
    retries={"mode": "standard", "total_max_attempts": ATTEMPTS},  # "max_attempts" would count retries only
    connect_timeout=CONNECT_TIMEOUT_SECONDS,
    read_timeout=READ_TIMEOUT_SECONDS,
    max_pool_connections=32,
)
# AwsError.code of a call that got no answer: it may or may not have been carried out.
NO_ANSWER = "NoAnswer"


WAIT_POLL_SECONDS = 2.0


class Clients:
    """One boto3 session, one client per (service, region), made on first use."""

    def __init__(self, session: boto3.session.Session | None = None) -> None:
        self._given = session
        self._session: boto3.session.Session | None = None
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._account_lock = threading.Lock()
        self._account: str | None = None
        self._account_error: AwsError | None = None

    def client(self, service: str, region: str) -> Any:
        with self._lock:
            key = (service, region)
            if key not in self._clients:
                # A missing profile or a malformed ~/.aws/config surfaces here: a user error.
                self._session = self._session or self._given or call(boto3.session.Session, "reading the AWS configuration", "AWS_PROFILE / ~/.aws/config")
                session = self._session
                self._clients[key] = call(lambda: session.client(service, region_name=region, config=RETRY_CONFIG),
                                          f"{service} client", region)
            return self._clients[key]

    def account(self, region: str) -> str:
        """The caller's account, for repositories given by name only (asked once, by one thread).

        A failure is kept too: the threads waiting on the lock would otherwise each ask again, one
        after the other, and an endpoint that never answers would hold plan for every one."""
        with self._account_lock:
            if self._account_error is not None:
                raise self._account_error
            if self._account is None:
                try:
                    identity = call(lambda: self.client("sts", region).get_caller_identity(), "sts:GetCallerIdentity", "the caller's account")
                except AwsError as exc:
                    self._account_error = exc
                    raise
                self._account = str(identity["Account"])
            return self._account


def call(fn: Callable[[], T], operation: str, resource: str) -> T:
    """Run one AWS call; map what can go wrong to an AwsError saying what, where and what to do."""
    try:
        return fn()
    except botocore.exceptions.ClientError as exc:
        raise AwsError(refusal(operation, resource, exc.response.get("Error", {}))) from exc
    except botocore.exceptions.NoCredentialsError as exc:
        raise AwsError(Diagnostic("no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
                                  operation=operation, resource=resource, code="NoCredentials")) from exc
    except botocore.exceptions.NoRegionError as exc:
        raise AwsError(Diagnostic("no region; set AWS_REGION or 'region' in deploy.yaml",
                                  operation=operation, resource=resource, code="NoRegion")) from exc
    except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as exc:
        raise AwsError(Diagnostic(_no_answer(exc), operation=operation, resource=resource, code=NO_ANSWER)) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise AwsError(Diagnostic(str(exc), operation=operation, resource=resource)) from exc


def refusal(operation: str, resource: str, error: dict[str, Any]) -> Diagnostic:
    """AWS's answer to a refused call: its code, its message, and what to do when we know it."""
    code = str(error.get("Code", "Unknown"))
    return Diagnostic(f"{code}: {error.get('Message', '')}{_HINTS.get(code, '')}", operation=operation, resource=resource, code=code)


def _no_answer(exc: botocore.exceptions.BotoCoreError) -> str:
    """What went wrong with the connection, the endpoint (scheme://host:port, the URL boto3 used
    without its path) and what to do. Timeouts and resets are what remain after the retries."""
    url = str(getattr(exc, "kwargs", {}).get("endpoint_url") or "")
    parts = urlsplit(url)
    endpoint = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "the AWS endpoint"
    if isinstance(exc, botocore.exceptions.ReadTimeoutError):
        what = f"{endpoint} accepted the connection but did not answer within {READ_TIMEOUT_SECONDS}s ({ATTEMPTS} attempts)"
    elif isinstance(exc, botocore.exceptions.ConnectTimeoutError):
        what = f"connecting to {endpoint} timed out after {CONNECT_TIMEOUT_SECONDS}s ({ATTEMPTS} attempts)"
    elif isinstance(exc, botocore.exceptions.EndpointConnectionError):
        what = f"cannot connect to {endpoint} ({ATTEMPTS} attempts)"
    elif isinstance(exc, botocore.exceptions.ConnectionClosedError):
        what = f"{endpoint} closed the connection before answering ({ATTEMPTS} attempts)"
    else:
        what = f"the connection to {endpoint} failed ({type(exc).__name__})"
    return (f"no answer: {what}; check the network (proxy, firewall, VPN) and, if set, AWS_ENDPOINT_URL / "
            "AWS_ENDPOINT_URL_<SERVICE>, then run again")


# What AWS answers is foreign input too: values the plan compares, shows and saves are checked
# here, at the edge. An identifier must be one short printable line; a digest must be one.
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_FUNCTION_ARN = re.compile(r"arn:aws[a-z-]{0,16}:lambda:[a-z0-9-]{1,32}:[0-9]{12}:function:[A-Za-z0-9_-]{1,64}")
MAX_TOKEN = 256
MAX_TEXT = 4096


def _token(value: Any) -> str | None:
    """An identifier AWS returned (a status, an architecture, a RevisionId, a media type), or
    None when it is not a short printable string: such a value is never shown or acted on."""
    return value if isinstance(value, str) and 0 < len(value) <= MAX_TOKEN and value.isprintable() else None


def _matching(value: Any, pattern: re.Pattern[str]) -> str | None:
    return value if isinstance(value, str) and pattern.fullmatch(value) else None


def _text(value: Any) -> str | None:
    """AWS's own words (a LastUpdateStatusReason): any string, bounded; shown inert by renderers."""
    return value[:MAX_TEXT] if isinstance(value, str) else None


def _int(value: Any, default: int) -> int:
    return value if type(value) is int and 0 < value <= 1 << 20 else default


def _tracing(value: Any) -> str:
    """The tracing mode Lambda reports: one of TRACING_MODES, its default when it says none, and
    for anything else a marker that differs from every declared mode (a plan then sets it)."""
    return value if value in TRACING_MODES else (DEFAULT_TRACING if value is None else "(unknown)")


def _observed_config(config: Mapping[str, Any], concurrency: Any = None, tags: Any = None) -> ObservedConfig:
    """The managed keys of GetFunction's Configuration (and of its Concurrency and Tags), Lambda's defaults
    filled where it says nothing. Environment values are kept as Lambda has them (compared, never
    shown); a name or value that is no string is dropped, values bounded. A reserved concurrency
    that is no integer of 0 to MAX_CONCURRENCY counts as none."""
    variables = (config.get("Environment") or {}).get("Variables") or {}
    environment = {k: v[:MAX_TEXT] for k, v in variables.items() if isinstance(k, str) and isinstance(v, str)} \
        if isinstance(variables, dict) else {}
    return ObservedConfig(
        role=_text(config.get("Role")),
        memory=_int(config.get("MemorySize"), DEFAULT_MEMORY),
        timeout=_int(config.get("Timeout"), DEFAULT_TIMEOUT),
        ephemeral_storage=_int((config.get("EphemeralStorage") or {}).get("Size"), DEFAULT_EPHEMERAL_STORAGE),
        tracing=_tracing((config.get("TracingConfig") or {}).get("Mode")),
        description=_text(config.get("Description")) or "",
        environment=environment,
        reserved_concurrency=_count((concurrency or {}).get("ReservedConcurrentExecutions") if isinstance(concurrency, dict) else None),
        tags=_tags(tags),
    )


# AWS's bounds on a tag (a hostile endpoint's longer strings are cut, never shown whole).
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256


def _tags(tags: Any) -> dict[str, str]:
    """GetFunction's Tags: string keys and values only, bounded; anything else is dropped."""
    if not isinstance(tags, dict):
        return {}
    return {k[:MAX_TAG_KEY]: v[:MAX_TAG_VALUE] for k, v in tags.items() if isinstance(k, str) and isinstance(v, str)}


# Above any account's concurrency quota: a larger number is not one Lambda reports.
MAX_CONCURRENCY = 1 << 20


def _count(value: Any) -> int | None:
    return value if type(value) is int and 0 <= value <= MAX_CONCURRENCY else None


def _extended(error: AwsError, more: str) -> Diagnostic:
    return dataclasses.replace(error.diagnostic, summary=error.diagnostic.summary + more)


def _answer_may_be_lost(error: AwsError) -> bool:
    """No answer at all, or a refusal that came after a retry: the first attempt may have landed."""
    if error.code == NO_ANSWER:
        return True
    cause = error.__cause__
    retried = isinstance(cause, botocore.exceptions.ClientError) and cause.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0
    return error.code == "PreconditionFailedException" and retried


_HINTS = {
    "AccessDeniedException": "; the caller lacks this IAM permission",
    "AccessDenied": "; the caller lacks this IAM permission",
    "UnrecognizedClientException": "; the credentials are invalid",
    "InvalidClientTokenId": "; the credentials are invalid",
    "ExpiredTokenException": "; the credentials have expired: refresh them (aws sso login, ...)",
    "PreconditionFailedException": "; the function changed since the plan: run plan again",
}


class LambdaGateway:
    def __init__(self, clients: Clients, region: str) -> None:
        self._client = clients.client("lambda", region)
        self._region = region

    def get_function(self, name: str) -> FunctionState:
        try:
            response = call(lambda: self._client.get_function(FunctionName=name), "lambda:GetFunction", f"function {name} ({self._region})")
        except AwsError as exc:
            if exc.code == "ResourceNotFoundException":
                return FunctionState(exists=False)
            raise
        config = response.get("Configuration", {})
        return FunctionState(
            exists=True,
            package_type=_token(config.get("PackageType")),
            code_sha256=_matching(config.get("CodeSha256"), _HEX64) if config.get("PackageType") == "Image" else None,
            architectures=tuple(a for a in map(_token, config.get("Architectures") or ("x86_64",)) if a),  # Lambda's default
            state=_token(config.get("State")),
            last_update_status=_token(config.get("LastUpdateStatus")),
            last_update_reason=_text(config.get("LastUpdateStatusReason")),
            revision_id=_token(config.get("RevisionId")),
            config=_observed_config(config, response.get("Concurrency"), response.get("Tags")),
            arn=_matching(config.get("FunctionArn"), _FUNCTION_ARN),
        )

    def update_function_configuration(self, name: str, request: Mapping[str, Any], revision_id: str | None) -> str | None:
        """Set the configuration keys of `request` (UpdateFunctionConfiguration's arguments);
        `revision_id` makes Lambda refuse if the function changed since it was read. Returns the
        new RevisionId. Not retried after a lost answer: the RevisionId would refuse the retry
        of our own change, and the plan that follows shows what Lambda holds."""
        kwargs: dict[str, Any] = {"FunctionName": name, **request}
        if revision_id:
            kwargs["RevisionId"] = revision_id
        response = call(lambda: self._client.update_function_configuration(**kwargs), "lambda:UpdateFunctionConfiguration",
                        f"function {name}")
        revision: str | None = _token(response.get("RevisionId"))
        return revision

    def put_function_concurrency(self, name: str, reserved: int) -> None:
        """Reserve `reserved` concurrent executions for the function (PutFunctionConcurrency: not
        part of UpdateFunctionConfiguration, takes no RevisionId, and setting it twice is
        harmless, so a lost answer is safely retried)."""
        call(lambda: self._client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=reserved),
             "lambda:PutFunctionConcurrency", f"function {name}")

    def tag_resource(self, arn: str, tags: Mapping[str, str]) -> None:
        """Add or replace `tags` on the function `arn` (TagResource leaves its other tags; setting
        the same tags twice is harmless, so a lost answer is safely retried)."""
        call(lambda: self._client.tag_resource(Resource=arn, Tags=dict(tags)), "lambda:TagResource", f"function {arn}")

    def update_function_code(self, name: str, image_uri: str, architecture: str, revision_id: str | None) -> str | None:
        """Point the function at `image_uri` (repo@sha256:...). Returns the new RevisionId."""
        kwargs: dict[str, Any] = {"FunctionName": name, "ImageUri": image_uri, "Architectures": [architecture]}
        if revision_id:
            kwargs["RevisionId"] = revision_id
        try:
            response = call(lambda: self._client.update_function_code(**kwargs), "lambda:UpdateFunctionCode", f"function {name}")
        except AwsError as exc:
            if not _answer_may_be_lost(exc):
                raise
            return self._landed_update(name, image_uri, architecture, exc)
        revision: str | None = response.get("RevisionId")
        return revision

    def _landed_update(self, name: str, image_uri: str, architecture: str, error: AwsError) -> str | None:
        """An attempt got no answer: Lambda may have applied it (and a retry with the same
        RevisionId was then refused by our own change). Ask Lambda which it was."""
        digest = image_uri.rpartition("@sha256:")[2]
        try:
            now = self.get_function(name)
        except AwsError:
            raise AwsError(_extended(error, ". Lambda could not be asked whether the update went through either: the "
                                            "function may or may not run the new image; run 'deployer plan' to see")) from error
        if digest and now.code_sha256 == digest and now.architectures == (architecture,):
            return now.revision_id  # ours: the update went through, only its answer was lost
        if error.code == NO_ANSWER:
            running = f"sha256:{now.code_sha256[:12]}" if now.code_sha256 else "no image"
            raise AwsError(_extended(error, f". Lambda did not apply the update (the function still runs {running})")) from error
        raise error

    def create_function(self, name: str, image_uri: str, architecture: str, request: Mapping[str, Any]) -> str | None:
        """Create an Image function running `image_uri` (repo@sha256:...) with the configuration
        of `request` (CreateFunction's arguments for the declared keys, Role among them).
        Returns its RevisionId."""
        kwargs: dict[str, Any] = {"FunctionName": name, "PackageType": "Image", "Code": {"ImageUri": image_uri},
                                  "Architectures": [architecture], "Publish": False, **request}
        response = call(lambda: self._client.create_function(**kwargs), "lambda:CreateFunction", f"function {name}")
        revision: str | None = _token(response.get("RevisionId"))
        return revision

    def wait_active(self, name: str, sleep: Callable[[float], None] = time.sleep, timeout_seconds: int = 600) -> None:
        """Wait for State Active after a creation; fail fast on Failed with Lambda's reason."""
        self._wait("function_active_v2", "State", "Pending", "StateReason", name, sleep, timeout_seconds)

    def wait_updated(self, name: str, sleep: Callable[[float], None] = time.sleep, timeout_seconds: int = 600) -> None:
        """Wait for LastUpdateStatus Successful; fail fast on Failed with Lambda's reason."""
        self._wait("function_updated_v2", "LastUpdateStatus", "InProgress", "LastUpdateStatusReason", name, sleep, timeout_seconds)

    def _wait(self, waiter_name: str, status_key: str, pending: str, reason_key: str, name: str,
              sleep: Callable[[float], None], timeout_seconds: int) -> None:
        """botocore's waiter judges each GetFunction (its acceptors know the success and failure
        states); the polling is ours, one attempt at a time, so that `sleep` can be interrupted."""
        waiter = self._client.get_waiter(waiter_name)
        deadline = time.monotonic() + timeout_seconds
        what = "the update" if status_key == "LastUpdateStatus" else "the function to be Active"

        def settled() -> bool:
            try:
                waiter.wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 1})
                return True
            except botocore.exceptions.WaiterError as exc:
                error = (exc.last_response or {}).get("Error")
                if error:  # the waiter wraps a refused GetFunction: say it as any refused call
                    raise AwsError(refusal(f"lambda:GetFunction (waiting for {what})", f"function {name}", error)) from exc
                config = exc.last_response.get("Configuration", exc.last_response) if exc.last_response else {}
                status = config.get(status_key, "unknown")
                if "Max attempts exceeded" in str(exc) and status == pending and time.monotonic() < deadline:
                    return False
                reason = config.get(reason_key, str(exc))
                done = "update" if status_key == "LastUpdateStatus" else "creation"
                raise AwsError(Diagnostic(f"{done} did not succeed ({status_key} {status}): {reason}", function=name)) from exc

        while not call(settled, f"lambda:GetFunction (waiting for {what})", f"function {name}"):
            sleep(WAIT_POLL_SECONDS)


class EcrGateway:
    def __init__(self, clients: Clients, region: str) -> None:
        self._client = clients.client("ecr", region)
        self._region = region

    def describe_image(self, repository: str, tag: str) -> ImageState:
        where = f"repository {repository} ({self._region})"
        try:
            response = call(lambda: self._client.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}]), "ecr:DescribeImages", where)
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

    def create_repository(self, repository: str, untagged_expiry_days: int, account: str | None = None) -> None:
        """Create `repository` as deployer creates them: immutable tags (a content tag is never
        pushed twice), scan on push, AES256 encryption, and a lifecycle policy expiring untagged
        images after `untagged_expiry_days` (tagged ones, what functions run, stay). One that
        exists already (another function of this apply made it, or someone since the plan) is
        fine, and left as it is: its policy is not ours to set. `account`: the registry to
        create it in, which AWS refuses when it is not the caller's (never another account's
        name in the caller's registry)."""
        where = f"repository {repository} ({self._region})"
        registry = {"registryId": account} if account else {}
        try:
            call(lambda: self._client.create_repository(
                repositoryName=repository, imageTagMutability="IMMUTABLE", **registry,
                imageScanningConfiguration={"scanOnPush": True}, encryptionConfiguration={"encryptionType": "AES256"},
            ), "ecr:CreateRepository", where)
        except AwsError as exc:
            if exc.code != "RepositoryAlreadyExistsException":
                raise
            return
        policy = {"rules": [{"rulePriority": 1, "description": f"expire untagged images after {untagged_expiry_days} days",
                             "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                                           "countNumber": untagged_expiry_days},
                             "action": {"type": "expire"}}]}
        call(lambda: self._client.put_lifecycle_policy(repositoryName=repository, lifecyclePolicyText=json.dumps(policy), **registry),
             "ecr:PutLifecyclePolicy", where)

    def login(self) -> RegistryLogin:
        response = call(lambda: self._client.get_authorization_token(), "ecr:GetAuthorizationToken", f"ECR in {self._region}")
        try:
            data = response["authorizationData"][0]
            username, _, password = base64.b64decode(data["authorizationToken"], validate=True).decode().partition(":")
        except (KeyError, IndexError, TypeError, ValueError) as exc:  # binascii.Error, UnicodeDecodeError are ValueErrors
            raise AwsError(Diagnostic("the answer holds no usable authorization token; check the endpoint (AWS_ENDPOINT_URL_ECR)",
                                      operation="ecr:GetAuthorizationToken", resource=f"ECR in {self._region}")) from exc
        return RegistryLogin(username, password, str(data.get("proxyEndpoint") or ""))
