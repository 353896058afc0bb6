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
from typing import Any, Callable, Iterator, Mapping, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.exceptions

from deployer.errors import AwsError, Diagnostic
from deployer.function_config import (
    APPLICATION_LOG_LEVELS,
    DEFAULT_EPHEMERAL_STORAGE,
    DEFAULT_LOG_FORMAT,
    DEFAULT_LOG_LEVEL,
    DEFAULT_MEMORY,
    DEFAULT_TIMEOUT,
    DEFAULT_TRACING,
    LOG_FORMATS,
    NO_IMAGE_CONFIG,
    NO_VPC,
    SYSTEM_LOG_LEVELS,
    TRACING_MODES,
    ImageConfig,
    LoggingConfig,
    ObservedConfig,
    VpcConfig,
    default_log_group,
)
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
    AliasState,
    AliasTarget,
    FunctionListing,
    FunctionState,
    ImageState,
    Invoked,
    StoredImage,
    VersionImage,
    VersionState,
)

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


def default_region() -> str | None:
    """The region boto3 would use without one given: AWS_REGION, AWS_DEFAULT_REGION, the profile's."""
    import os

    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or call(
        lambda: boto3.session.Session().region_name, "reading the AWS configuration", "AWS_PROFILE / ~/.aws/config")


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
_REPOSITORY_ARN = re.compile(r"arn:aws[a-z-]{0,16}:ecr:[a-z0-9-]{1,32}:[0-9]{12}:repository/[a-z0-9._/-]{2,256}")
MAX_TOKEN = 256
MAX_POLICY = 1 << 16  # above ECR's own bounds on a lifecycle or repository policy
MAX_IMAGE_URI = 512  # a registry host, a repository name (256) and a digest or tag
MAX_INVOKE_ANSWER = 6 * 1024 * 1024  # Lambda's bound on a synchronous answer
MAX_LISTED = 100_000  # versions or aliases of one function: past that, a listing stops (an endpoint that never ends)
_VERSION = re.compile(r"[1-9][0-9]{0,9}")  # a published version's number
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


def _observed_config(config: Mapping[str, Any], concurrency: Any = None, tags: Any = None, name: str | None = None) -> ObservedConfig:
    """The managed keys of GetFunction's Configuration (and of its Concurrency and Tags), Lambda's defaults
    filled where it says nothing (the default log group is the function `name`'s). Environment values are
    kept as Lambda has them (compared, never shown); a name or value that is no string is dropped, values
    bounded. A reserved concurrency that is no integer of 0 to MAX_CONCURRENCY counts as none."""
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
        image_config=_image_config(config.get("ImageConfigResponse")),
        logging=_logging(config.get("LoggingConfig"), name),
        vpc=_vpc(config.get("VpcConfig")),
        environment=environment,
        reserved_concurrency=_count((concurrency or {}).get("ReservedConcurrentExecutions") if isinstance(concurrency, dict) else None),
        tags=_tags(tags),
    )


# AWS's bounds and forms of ImageConfig, LoggingConfig and VpcConfig values: anything else Lambda
# reports makes the whole object unreadable (None), which equals no declared value.
MAX_IMAGE_ARGUMENTS = 1500
MAX_WORKING_DIRECTORY = 1000
MAX_SUBNETS = 16
MAX_SECURITY_GROUPS = 5
_LOG_GROUP = re.compile(r"[.\-_/#A-Za-z0-9]{1,512}")
_SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8}(?:[0-9a-f]{9})?")
_SECURITY_GROUP_ID = re.compile(r"sg-[0-9a-f]{8}(?:[0-9a-f]{9})?")


def _strings(value: Any, most: int, pattern: re.Pattern[str] | None = None) -> tuple[str, ...] | None:
    """A list of at most `most` bounded strings (each matching `pattern`), () when absent, else None."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > most:
        return None
    if not all(isinstance(v, str) and len(v) <= MAX_TEXT and (pattern is None or pattern.fullmatch(v)) for v in value):
        return None
    return tuple(value)


def _or(value: Any, default: T) -> Any:
    """`value`, or `default` where Lambda says nothing (no value, or an empty string); a value of
    another type stays, for the caller to refuse."""
    return default if value is None or value == "" else value


def _image_config(response: Any) -> ImageConfig | None:
    """ImageConfigResponse.ImageConfig: the image's own (empty) for what it leaves out; None when it is
    malformed, or when Lambda reports only an Error (it could not say what the function has)."""
    if response is None:
        return NO_IMAGE_CONFIG
    if not isinstance(response, dict):
        return None
    config = response.get("ImageConfig")
    if config is None:
        return None if response.get("Error") else NO_IMAGE_CONFIG
    if not isinstance(config, dict):
        return None
    entry_point = _strings(config.get("EntryPoint"), MAX_IMAGE_ARGUMENTS)
    command = _strings(config.get("Command"), MAX_IMAGE_ARGUMENTS)
    directory = _or(config.get("WorkingDirectory"), "")
    if entry_point is None or command is None or not isinstance(directory, str) or len(directory) > MAX_WORKING_DIRECTORY:
        return None
    return ImageConfig(entry_point, command, directory)


def _logging(config: Any, name: str | None) -> LoggingConfig | None:
    """LoggingConfig with Lambda's defaults: Text, the function's default log group, and under JSON
    both levels INFO; under Text no level applies, whatever is reported (None)."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        return None
    log_format = _or(config.get("LogFormat"), DEFAULT_LOG_FORMAT)
    group = _or(config.get("LogGroup"), default_log_group(name) if name else None)
    if log_format not in LOG_FORMATS or not (group is None or _matching(group, _LOG_GROUP)):
        return None
    if log_format != "JSON":
        return LoggingConfig(log_format, group)
    application = _or(config.get("ApplicationLogLevel"), DEFAULT_LOG_LEVEL)
    system = _or(config.get("SystemLogLevel"), DEFAULT_LOG_LEVEL)
    if application not in APPLICATION_LOG_LEVELS or system not in SYSTEM_LOG_LEVELS:
        return None
    return LoggingConfig(log_format, group, application, system)


def _vpc(config: Any) -> VpcConfig | None:
    """VpcConfig; no VPC (NO_VPC) when Lambda reports none."""
    if config is None:
        return NO_VPC
    if not isinstance(config, dict):
        return None
    subnets = _strings(config.get("SubnetIds"), MAX_SUBNETS, _SUBNET_ID)
    groups = _strings(config.get("SecurityGroupIds"), MAX_SECURITY_GROUPS, _SECURITY_GROUP_ID)
    ipv6 = config.get("Ipv6AllowedForDualStack")
    if subnets is None or groups is None or not (ipv6 is None or type(ipv6) is bool):
        return None
    return VpcConfig(subnets, groups, bool(ipv6))


# AWS's bounds on a tag (a hostile endpoint's longer strings are cut, never shown whole).
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256


def _image_uri(code: Any) -> str | None:
    """Code.ImageUri: a printable string, at most the length of the longest ECR image reference."""
    uri = code.get("ImageUri") if isinstance(code, dict) else None
    return uri if isinstance(uri, str) and 0 < len(uri) <= MAX_IMAGE_URI and uri.isprintable() else None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _json(text: Any) -> Any:
    """A policy document ECR returned, parsed; None when it is no bounded JSON text."""
    if not isinstance(text, str) or len(text) > MAX_POLICY:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return None


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

    def get_function(self, name: str, qualifier: str | None = None) -> FunctionState:
        """$LATEST, or the version or alias `qualifier` names."""
        extra = {"Qualifier": qualifier} if qualifier else {}
        shown = f"{name}:{qualifier}" if qualifier else name
        try:
            response = call(lambda: self._client.get_function(FunctionName=name, **extra), "lambda:GetFunction",
                            f"function {shown} ({self._region})")
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
            config=_observed_config(config, response.get("Concurrency"), response.get("Tags"), name),
            arn=_matching(config.get("FunctionArn"), _FUNCTION_ARN),
            image_uri=_image_uri(response.get("Code")),
        )

    def get_alias(self, name: str, alias: str) -> AliasState:
        """The alias's version and RevisionId, with that version's image and configuration (two
        calls: GetAlias, then GetFunction of the version); `exists` False when there is no such alias."""
        try:
            response = call(lambda: self._client.get_alias(FunctionName=name, Name=alias), "lambda:GetAlias",
                            f"alias {alias} of function {name} ({self._region})")
        except AwsError as exc:
            if exc.code == "ResourceNotFoundException":
                return AliasState(exists=False)
            raise
        version = _matching(response.get("FunctionVersion"), _VERSION)
        if version is None:
            raise AwsError(Diagnostic("the answer names no published version (a number); check the endpoint (AWS_ENDPOINT_URL_LAMBDA)",
                                      operation="lambda:GetAlias", resource=f"alias {alias} of function {name}"))
        aliased = self.get_function(name, version)
        rolled_back = str(response.get("Description") or "").startswith("deployer rollback;")
        return AliasState(True, version, _token(response.get("RevisionId")), aliased.code_sha256, aliased.config,
                          aliased.config.description, rolled_back)

    def list_versions(self, name: str) -> list[VersionState]:
        """The function's published versions (not $LATEST), oldest first: number, image, date, description."""
        versions: list[VersionState] = []
        marker: dict[str, str] = {}
        for _ in range(MAX_PAGES):
            page = call(lambda: self._client.list_versions_by_function(FunctionName=name, **marker),
                        "lambda:ListVersionsByFunction", f"function {name} ({self._region})")
            for entry in page.get("Versions") or ():
                version = _matching(entry.get("Version"), _VERSION) if isinstance(entry, dict) else None
                if version is not None:
                    versions.append(VersionState(version, _matching(entry.get("CodeSha256"), _HEX64), _token(entry.get("LastModified")),
                                                 _text(entry.get("Description")) or ""))
            following = _token(page.get("NextMarker"))
            if following is None or len(versions) > MAX_LISTED:
                return sorted(versions, key=lambda v: int(v.version))
            marker = {"Marker": following}
        raise AwsError(Diagnostic(f"the listing did not end after {MAX_PAGES} pages; check the endpoint (AWS_ENDPOINT_URL_LAMBDA)",
                                  operation="lambda:ListVersionsByFunction", resource=f"function {name}"))

    def list_aliases(self, name: str) -> dict[str, tuple[str, str | None]]:
        """The function's aliases: name -> (version, RevisionId)."""
        aliases: dict[str, tuple[str, str | None]] = {}
        marker: dict[str, str] = {}
        for _ in range(MAX_PAGES):
            page = call(lambda: self._client.list_aliases(FunctionName=name, **marker), "lambda:ListAliases",
                        f"function {name} ({self._region})")
            for entry in page.get("Aliases") or ():
                alias, version = (_token(entry.get("Name")), _matching(entry.get("FunctionVersion"), _VERSION)) \
                    if isinstance(entry, dict) else (None, None)
                if alias is not None and version is not None:
                    aliases[alias] = (version, _token(entry.get("RevisionId")))
            following = _token(page.get("NextMarker"))
            if following is None or len(aliases) > MAX_LISTED:
                return aliases
            marker = {"Marker": following}
        raise AwsError(Diagnostic(f"the listing did not end after {MAX_PAGES} pages; check the endpoint (AWS_ENDPOINT_URL_LAMBDA)",
                                  operation="lambda:ListAliases", resource=f"function {name}"))

    def publish_version(self, name: str, code_sha256: str, revision_id: str | None, description: str) -> str:
        """Publish $LATEST as a version, refused by Lambda unless it still runs `code_sha256` (hex)
        and, with `revision_id`, is unchanged since it was read. Returns the version number (an
        existing one when nothing changed since it was published: Lambda publishes nothing then)."""
        kwargs: dict[str, Any] = {"FunctionName": name, "CodeSha256": code_sha256, "Description": description}
        if revision_id:
            kwargs["RevisionId"] = revision_id
        response = call(lambda: self._client.publish_version(**kwargs), "lambda:PublishVersion", f"function {name}")
        version = _matching(response.get("Version"), _VERSION)
        if version is None:
            raise AwsError(Diagnostic("the answer holds no version number; check the endpoint (AWS_ENDPOINT_URL_LAMBDA)",
                                      operation="lambda:PublishVersion", resource=f"function {name}"))
        return version

    def invoke(self, name: str, qualifier: str, payload: bytes) -> Invoked:
        """Invoke the version `qualifier` synchronously with `payload`; its answer, whether it is a
        function error, and the tail of its log (LogType Tail: Lambda's last 4 KB)."""
        response = call(lambda: self._client.invoke(FunctionName=name, Qualifier=qualifier, Payload=payload, LogType="Tail"),
                        "lambda:Invoke", f"function {name}:{qualifier}")
        body = response.get("Payload")
        answer = body.read(MAX_INVOKE_ANSWER + 1)[:MAX_INVOKE_ANSWER] if body is not None else b""
        try:
            log = base64.b64decode(response.get("LogResult") or "", validate=True).decode("utf-8", "replace")
        except (ValueError, TypeError):
            log = ""
        return Invoked(answer, _token(response.get("FunctionError")), log[-MAX_TEXT:])

    def update_alias(self, name: str, alias: str, version: str, revision_id: str | None, description: str) -> None:
        """Point `alias` at `version`, refused by Lambda if the alias changed since it was read."""
        kwargs: dict[str, Any] = {"FunctionName": name, "Name": alias, "FunctionVersion": version, "Description": description}
        if revision_id:
            kwargs["RevisionId"] = revision_id
        call(lambda: self._client.update_alias(**kwargs), "lambda:UpdateAlias", f"alias {alias} of function {name}")

    def create_alias(self, name: str, alias: str, version: str, description: str) -> None:
        call(lambda: self._client.create_alias(FunctionName=name, Name=alias, FunctionVersion=version, Description=description),
             "lambda:CreateAlias", f"alias {alias} of function {name}")

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

    # -- prune: every function of the region, each version's image, where aliases point ---------
    # A listing prune acts on must be whole: an entry it cannot read, or pages that never end,
    # is an error (prune then deletes nothing that entry could have used), never skipped.

    def list_functions(self) -> list[FunctionListing]:
        """Every function of the region (ListFunctions, every page): name and package type."""
        where = f"functions ({self._region})"
        listed: list[FunctionListing] = []
        for entry in _listing(lambda more: self._client.list_functions(**more), "Functions", "Marker", "NextMarker",
                              "lambda:ListFunctions", where):
            name = _matching(entry.get("FunctionName"), _FUNCTION_NAME)
            if name is None:
                raise AwsError(_unreadable_entry("lambda:ListFunctions", where, "a function name"))
            listed.append(FunctionListing(name, _token(entry.get("PackageType"))))
        return listed

    def list_version_images(self, name: str) -> list[VersionImage]:
        """Every version of the function, $LATEST included (ListVersionsByFunction, every page),
        each with its image digest (CodeSha256, hex)."""
        where = f"function {name} ({self._region})"
        listed: list[VersionImage] = []
        for entry in _listing(lambda more: self._client.list_versions_by_function(FunctionName=name, **more), "Versions", "Marker",
                              "NextMarker", "lambda:ListVersionsByFunction", where):
            version = entry.get("Version")
            if version != LATEST and _matching(version, _VERSION) is None:
                raise AwsError(_unreadable_entry("lambda:ListVersionsByFunction", where, "a version number"))
            image = entry.get("PackageType") != "Zip"
            listed.append(VersionImage(str(version), _matching(entry.get("CodeSha256"), _HEX64) if image else None, image))
        return listed

    def list_alias_targets(self, name: str) -> list[AliasTarget]:
        """Every alias of the function (ListAliases, every page) with the versions it invokes: its
        FunctionVersion, then those its RoutingConfig sends a share of the traffic to."""
        where = f"function {name} ({self._region})"
        listed: list[AliasTarget] = []
        for entry in _listing(lambda more: self._client.list_aliases(FunctionName=name, **more), "Aliases", "Marker", "NextMarker",
                              "lambda:ListAliases", where):
            alias = _token(entry.get("Name"))
            weights = _mapping(entry.get("RoutingConfig")).get("AdditionalVersionWeights") or {}
            versions = [entry.get("FunctionVersion"), *(weights if isinstance(weights, dict) else [None])]
            if alias is None or not all(v == LATEST or _matching(v, _VERSION) for v in versions):
                raise AwsError(_unreadable_entry("lambda:ListAliases", where, "an alias and the versions it points at"))
            listed.append(AliasTarget(alias, tuple(str(v) for v in versions)))
        return listed

    def delete_version(self, name: str, version: str) -> None:
        """Delete one published version (DeleteFunction with its number as Qualifier). Never
        $LATEST nor the function: anything but a version number is refused before Lambda is
        asked. One already gone is fine (a lost answer retried, or someone else deleted it)."""
        if _VERSION.fullmatch(version) is None:
            raise ValueError(f"delete_version: {version!r} is not a published version's number")
        try:
            call(lambda: self._client.delete_function(FunctionName=name, Qualifier=version), "lambda:DeleteFunction",
                 f"version {version} of function {name} ({self._region})")
        except AwsError as exc:
            if exc.code != "ResourceNotFoundException":
                raise


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
            found[digest] = StoredImage(digest, tuple(dict.fromkeys((*(before.tags if before else ()), *named))),
                                        _token(entry.get("imageManifestMediaType")), _token(entry.get("artifactMediaType")))
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


# -- listings (prune) ------------------------------------------------------------------------

LATEST = "$LATEST"
MAX_PAGES = 10_000  # 500,000 functions or versions, 1,000,000 images: past that, an endpoint that never ends
BATCH_DELETE = 100  # ECR's bound on BatchDeleteImage's imageIds
UNREADABLE_TAG = "(unreadable tag)"
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _listing(fetch: Callable[[dict[str, str]], Any], key: str, ask: str, answer: str, operation: str,
             resource: str) -> Iterator[dict[str, Any]]:
    """The entries under `key` of every page of a listing: the next page asked for with `ask` set
    to the previous page's `answer` token. Raises AwsError when a page is not a list of objects,
    when a token is unreadable, or after MAX_PAGES pages: a listing is whole or an error."""
    more: dict[str, str] = {}
    for _ in range(MAX_PAGES):
        page = call(lambda: fetch(more), operation, resource)
        entries = page.get(key) if isinstance(page, dict) else None
        if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
            raise AwsError(_unreadable_entry(operation, resource, f"a list of {key}"))
        yield from entries
        token = page.get(answer)
        if token is None or token == "":
            return
        if not isinstance(token, str) or len(token) > MAX_TEXT:
            raise AwsError(_unreadable_entry(operation, resource, "a readable page token"))
        more = {ask: token}
    raise AwsError(Diagnostic(f"the listing did not end after {MAX_PAGES} pages; check the endpoint", operation=operation,
                              resource=resource))


def _unreadable_entry(operation: str, resource: str, what: str) -> Diagnostic:
    return Diagnostic(f"the answer holds no usable {what}; check the endpoint (AWS_ENDPOINT_URL_*): deployer acts only on a "
                      "listing it can read whole", operation=operation, resource=resource)
