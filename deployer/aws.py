"""What the gateways to Lambda and ECR (deployer.lambda_gateway, deployer.ecr_gateway) share, and STS:
thin typed wrappers that return the project's own data and turn
botocore errors into AwsError messages that name the call, the resource and what to do.

Clients are made once per (service, region) and shared by threads (boto3 clients are thread-safe).
botocore's "standard" retry mode absorbs throttling and transient 5xx; endpoints, profiles and
credentials come from boto3's standard configuration (AWS_PROFILE, AWS_ENDPOINT_URL*, ...).

Every call is bounded in time: an endpoint that accepts connections and never answers (or never
accepts them) fails a call within CALL_BOUND_SECONDS, with a message naming the endpoint. Except
Invoke (a smoke test), which runs the function: its client (`invoke_client`) sends it once and
waits as long as the function may run (`invoke_wait`); its caller can be interrupted meanwhile.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.exceptions

from deployer.errors import AwsError, Diagnostic

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


# An Invoke is sent once: the SDK's retry of a call whose answer was lost (a read timeout, a reset)
# would run the function again. Its read waits for the function's own timeout and this much more
# (an image's cold start, Lambda's own queueing).
INVOKE_MARGIN_SECONDS = 60
MAX_FUNCTION_TIMEOUT = 900  # Lambda's
INVOKE_WAIT_STEP = 60
INVOKE_CONFIG = RETRY_CONFIG.merge(botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1}))


def invoke_wait(function_timeout: int) -> int:
    """How long an Invoke's read waits for a function that runs up to `function_timeout` seconds:
    that, taken within Lambda's bounds (1-900 s, whatever an endpoint reports) and rounded up to
    a whole minute (one client per minute, not per value), and the margin."""
    seconds = min(max(function_timeout, 1), MAX_FUNCTION_TIMEOUT)
    return -(-seconds // INVOKE_WAIT_STEP) * INVOKE_WAIT_STEP + INVOKE_MARGIN_SECONDS


class Clients:
    """One boto3 session, one client per (service, region), made on first use."""

    def __init__(self, session: boto3.session.Session | None = None) -> None:
        self._given = session
        self._session: boto3.session.Session | None = None
        self._clients: dict[tuple[str, str, int], Any] = {}  # (service, region, Invoke's read timeout or 0)
        self._lock = threading.Lock()
        self._account_lock = threading.Lock()
        self._account: str | None = None
        self._account_error: AwsError | None = None

    def client(self, service: str, region: str) -> Any:
        return self._made((service, region, 0), RETRY_CONFIG)

    def invoke_client(self, region: str, function_timeout: int) -> Any:
        """A Lambda client for Invoke of a function that runs up to `function_timeout` seconds:
        never sent twice by the SDK (INVOKE_CONFIG), its read waiting `invoke_wait` seconds."""
        seconds = invoke_wait(function_timeout)
        return self._made(("lambda", region, seconds), INVOKE_CONFIG.merge(botocore.config.Config(read_timeout=seconds)))

    def _made(self, key: tuple[str, str, int], config: botocore.config.Config) -> Any:
        with self._lock:
            if key not in self._clients:
                # A missing profile or a malformed ~/.aws/config surfaces here: a user error.
                self._session = self._session or self._given or call(boto3.session.Session, "reading the AWS configuration", "AWS_PROFILE / ~/.aws/config")
                session, (service, region, _) = self._session, key
                self._clients[key] = call(lambda: session.client(service, region_name=region, config=config), f"{service} client", region)
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


def _instant(value: Any) -> datetime | None:
    """A time AWS returned (botocore parses timestamps into aware datetimes), or None when it is
    not one with a zone: a naive time cannot be compared with the clock."""
    return value if isinstance(value, datetime) and value.utcoffset() is not None else None


def _text(value: Any) -> str | None:
    """AWS's own words (a LastUpdateStatusReason): any string, bounded; shown inert by renderers."""
    return value[:MAX_TEXT] if isinstance(value, str) else None


def _int(value: Any, default: int) -> int:
    return value if type(value) is int and 0 < value <= 1 << 20 else default


# AWS's bounds on a tag (a hostile endpoint's longer strings are cut, never shown whole).
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256


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


_HINTS = {
    "AccessDeniedException": "; the caller lacks this IAM permission",
    "AccessDenied": "; the caller lacks this IAM permission",
    "UnrecognizedClientException": "; the credentials are invalid",
    "InvalidClientTokenId": "; the credentials are invalid",
    "ExpiredTokenException": "; the credentials have expired: refresh them (aws sso login, ...)",
    "PreconditionFailedException": "; the function changed since the plan: run plan again",
}


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
