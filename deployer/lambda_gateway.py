"""The Lambda gateway: GetFunction read into the project's own data (every value checked, Lambda's
defaults filled), the calls apply and the release commands make, and the listings prune reads.
The shared machinery (clients, bounded calls, error messages, value checks) is deployer.aws."""

from __future__ import annotations

import base64
import dataclasses
import time
from typing import Any, Callable, Mapping

import botocore.config
import botocore.exceptions

from deployer.errors import AwsError, Diagnostic
from deployer.state import (
    AliasState,
    AliasTarget,
    FunctionListing,
    FunctionState,
    Invoked,
    VersionImage,
    VersionState,
)
from deployer.aws import (
    MAX_PAGES,
    MAX_TEXT,
    NO_ANSWER,
    ATTEMPTS,
    invoke_wait,
    WAIT_POLL_SECONDS,
    _FUNCTION_ARN,
    _HEX64,
    _VERSION,
    LATEST,
    MAX_INVOKE_ANSWER,
    MAX_LISTED,
    _FUNCTION_NAME,
    Clients,
    _listing,
    _mapping,
    _matching,
    _text,
    _token,
    _unreadable_entry,
    call,
    refusal,
)
from deployer.lambda_config import _image_uri, _observed_config


def _extended(error: AwsError, more: str) -> Diagnostic:
    return dataclasses.replace(error.diagnostic, summary=error.diagnostic.summary + more)


def _answer_may_be_lost(error: AwsError) -> bool:
    """No answer at all, or a refusal that came after a retry: the first attempt may have landed."""
    if error.code == NO_ANSWER:
        return True
    cause = error.__cause__
    retried = isinstance(cause, botocore.exceptions.ClientError) and cause.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0
    return error.code == "PreconditionFailedException" and retried


class LambdaGateway:
    def __init__(self, clients: Clients, region: str) -> None:
        self._clients = clients
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
        # An alias may point at $LATEST (it then follows every update): a release moves it to a version.
        version = "$LATEST" if response.get("FunctionVersion") == "$LATEST" else _matching(response.get("FunctionVersion"), _VERSION)
        if version is None:
            raise AwsError(Diagnostic("the answer names no published version (a number); check the endpoint (AWS_ENDPOINT_URL_LAMBDA)",
                                      operation="lambda:GetAlias", resource=f"alias {alias} of function {name}"))
        aliased = self.get_function(name, None if version == "$LATEST" else version)
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

    def invoke(self, name: str, qualifier: str, payload: bytes, function_timeout: int) -> Invoked:
        """Invoke the version `qualifier` synchronously with `payload`; its answer, whether it is a
        function error, and the tail of its log (LogType Tail: Lambda's last 4 KB). Waited for as
        long as the function may run (`function_timeout`, seconds), and never sent again once it
        may have reached Lambda: a second send would run the function a second time. A connection
        that could not be made is tried again (ATTEMPTS in all): nothing was sent."""
        where = f"function {name}:{qualifier}"

        def send() -> Any:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    return self._clients.invoke_client(self._region, function_timeout).invoke(
                        FunctionName=name, Qualifier=qualifier, Payload=payload, LogType="Tail")
                except botocore.exceptions.ConnectionError:  # refused, timed out, proxy or TLS: nothing was sent
                    if attempt == ATTEMPTS:
                        raise
                    time.sleep(attempt)
                except (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError) as exc:
                    what = (f"no answer within {invoke_wait(function_timeout)}s (the function's timeout of {function_timeout}s "
                            "and a margin)" if isinstance(exc, botocore.exceptions.ReadTimeoutError)
                            else "the connection closed before the answer")
                    raise AwsError(Diagnostic(f"{what}; it was invoked once and not again, since a second call would run it "
                                              "again: see its logs for what it did", operation="lambda:Invoke", resource=where,
                                              code=NO_ANSWER)) from exc
            raise AssertionError("unreachable: the last attempt returns or raises")

        response = call(send, "lambda:Invoke", where)
        body = response.get("Payload")
        answer = body.read(MAX_INVOKE_ANSWER + 1)[:MAX_INVOKE_ANSWER] if body is not None else b""
        try:
            log = base64.b64decode(response.get("LogResult") or "", validate=True).decode("utf-8", "replace")
        except (ValueError, TypeError):
            log = ""
        return Invoked(answer, _token(response.get("FunctionError")), log[-MAX_TEXT:])

    def update_alias(self, name: str, alias: str, version: str, revision_id: str | None, description: str) -> None:
        """Point `alias` at `version`, all of its traffic, refused by Lambda if the alias changed
        since it was read. Lambda keeps an alias's routing weights when none are given: a canary's
        share of traffic to another version would outlive the release (or rollback) otherwise."""
        kwargs: dict[str, Any] = {"FunctionName": name, "Name": alias, "FunctionVersion": version, "Description": description,
                                  "RoutingConfig": {"AdditionalVersionWeights": {}}}
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
