"""Runs moto's server with the corrections the local cloud needs (started by cloud.py as a script,
in its own process, with MOTO_LAMBDA_STUB_ECR=false in its environment).

1. Moto's UpdateFunctionCode ignores `Architectures`; real Lambda applies it with the new code.
   The product relies on that (an arm64 image on an x86_64 function breaks it), so it is applied.
2. Images reach moto's ECR from registry push notifications, which the registry sends
   asynchronously: a client could ask ECR about an image a moment before its event arrived.
   Real ECR shows an image as soon as the push returns, so before answering an ECR read (and before
   Lambda resolves an image) moto asks the harness to record what the registry already holds for
   that repository (`LOCALCLOUD_SYNC_URL?repository=NAME`).
3. Moto has no `RevisionId` on functions and ignores it as a precondition. Real Lambda gives every
   function version (and alias) a RevisionId that changes with each change of it, and refuses
   UpdateFunctionCode, UpdateFunctionConfiguration, PublishVersion and UpdateAlias given another
   one with PreconditionFailedException (HTTP 412); PublishVersion also refuses a `CodeSha256`
   that is not $LATEST's. The product's lost-update guard relies on both, so: GetFunction,
   GetFunctionConfiguration and every call returning a configuration carry `RevisionId`; a code
   update, a configuration update and a publish give $LATEST a new one (a published version gets
   its own); an alias update gives the alias a new one; and the four calls check their
   preconditions and change the function under one lock, so that check and change are atomic as
   in Lambda.
4. Moto's UpdateFunctionConfiguration ignores `EphemeralStorage` and `TracingConfig`; real Lambda
   applies both (the product manages /tmp's size and X-Ray tracing), so they are applied, the size
   validated by moto's own setter.
5. Moto's UpdateFunctionConfiguration ignores `ImageConfig`, and moto neither keeps nor reports a
   `LoggingConfig`. Real Lambda replaces the function's ImageConfig with the one an update gives;
   it keeps the LoggingConfig given to CreateFunction or UpdateFunctionConfiguration (the object
   given replaces the one held) and reports it in every configuration with its defaults filled:
   LogFormat Text, LogGroup /aws/lambda/<name>, and under JSON both levels INFO; it refuses a level
   under Text (a missing LogFormat is Text) with InvalidParameterValueException, changing nothing.
   The product manages all three, so they are kept and reported so (the log group is also where
   moto's invocations log). Moto's VpcConfig is already stored, replaced and reported as given.
6. Moto's PublishVersion copies $LATEST shallowly: the version shares $LATEST's `Code` dict, so a
   later UpdateFunctionCode of $LATEST changed the version's ImageUri too (GetFunction of the
   version then named the new image beside its old CodeSha256). In Lambda a version is immutable:
   it keeps the image (ImageUri, CodeSha256) and the configuration it was published with. The new
   version gets its own copy of the code and of the environment variables.
7. Moto refuses to invoke PackageType=Image functions ("not yet supported"). Lambda runs the
   function; so does the harness, for real (image_invoke.py). `Invoke` of an Image function, on
   $LATEST, a version or an alias (any qualifier moto resolves, in the path or `Qualifier`), pulls
   the image of that version from the registry that stands in for ECR by its CodeSha256 digest
   (as Lambda, it never follows a re-pushed tag) onto the Docker engine (LOCALCLOUD_REGISTRY, and
   the ECR credentials in the file LOCALCLOUD_REGISTRY_AUTH, both given by cloud.py), and runs it
   once with deployer.local_invoke.invoke_local (the Runtime API served in this process) with that
   version's environment, memory, timeout (Lambda's own, at most 900 s; init 10 s), name, version,
   region and ImageConfig. An image of another architecture than the function's, or one whose
   process the engine cannot start, is Lambda's function error Runtime.InvalidEntrypoint.
   RequestResponse answers 200 with the function's payload, or with `X-Amz-Function-Error:
   Unhandled` and the error document (a timeout or an exit in Lambda's words), and
   `X-Amz-Executed-Version`; with LogType=Tail, `X-Amz-Log-Result` holds the base64 of the last
   4 KB of the execution log (START, the function's lines, END, REPORT), which also goes to
   CloudWatch Logs as moto's own invocations do. Event answers 202 and runs it in the background;
   DryRun answers 204. What cannot run is an error, never a success: an image the registry no
   longer serves, 502 ResourceNotReadyException; the engine failing, 500 ServiceException; a
   payload that is not JSON, 400 InvalidRequestContentException; over 6 MiB, 413
   RequestTooLargeException; more than image_invoke.MAX_RUNS (8) runs at once, 429
   TooManyRequestsException. The harness's own bounds: a pull 120 s, a run's log kept 1 MiB. No
   container is left: invoke_local removes it, and on SIGTERM or SIGINT the runs under way are
   cancelled and their containers removed (waiting at most 15 s) before the server exits.
   Differences that remain: the container gets no AWS credentials, and sees account 000000000000
   in its invoked function ARN (the Runtime API's, as under `deployer invoke --local`).
8. Moto numbers a new version `len(versions) + 1`: after a version is deleted (deployer prune), the
   next publish would reuse a number, even one that still exists. Lambda never reuses a version
   number (a rollback record names versions by number), so a new version gets the highest number
   the function ever had, plus one.
Nothing else is changed.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import sys
import threading
import uuid
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

# The invoke runner (point 7) and deployer come from this checkout, whatever `pip install -e`
# points at: the harness and the code it runs are one version. A script's own directory is
# sys.path[0]; the checkout's root goes before it.
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))

import moto.server
from moto.awslambda.exceptions import InvalidParameterValueException, LambdaClientError, PreconditionFailedException
from moto.awslambda.models import ImageConfig, LambdaAlias, LambdaFunction, LambdaStorage
from moto.awslambda.responses import LambdaResponse
from moto.ecr.models import ECRBackend
from moto.server import main as moto_main
from moto.utilities.aws_headers import amz_crc32

from deployer.local_invoke import ImageOverrides
from tests.localcloud import image_invoke

SYNC_TIMEOUT_SECONDS = 20
# Real Lambda's words, so that what the product prints here is what it prints against AWS.
REVISION_MISMATCH = ("The Revision Id provided does not match the latest Revision Id. "
                     "Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
# Preconditions are checked and the change is made under this lock (the server is threaded).
_PRECONDITIONS = threading.Lock()
LEVEL_UNDER_TEXT = ('LogLevel is not supported when LogFormat is set to "Text". Remove LogLevel from your request or '
                    'change the LogFormat to "Json" and try again.')


def _sync_repository(repository: str) -> None:
    base = os.environ.get("LOCALCLOUD_SYNC_URL")
    if not base or not repository:
        return
    url = f"{base}?{urllib.parse.urlencode({'repository': repository})}"
    with urllib.request.urlopen(url, timeout=SYNC_TIMEOUT_SECONDS) as response:
        if response.status != 200:
            raise RuntimeError(f"local cloud: syncing ECR repository {repository} failed: HTTP {response.status}")


def _synced_read(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: ECRBackend, *args: Any, **kwargs: Any) -> Any:
        repository = kwargs.get("repository_name", args[0] if args else "")
        _sync_repository(repository)
        return method(self, *args, **kwargs)

    return wrapper


def _apply_architectures(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: LambdaFunction, updated_spec: dict[str, Any]) -> Any:
        if updated_spec.get("Architectures") and not updated_spec.get("DryRun"):
            # The property setter validates the value as moto does for CreateFunction.
            self.architectures = updated_spec["Architectures"]
        return method(self, updated_spec)

    return wrapper


def _logging_config(given: Any, function_name: str) -> dict[str, str]:
    """What Lambda holds for the LoggingConfig `given` whole: its defaults filled; a level under
    Text refused."""
    given = given if isinstance(given, dict) else {}
    log_format = given.get("LogFormat") or "Text"
    if log_format != "JSON" and (given.get("ApplicationLogLevel") or given.get("SystemLogLevel")):
        raise InvalidParameterValueException(LEVEL_UNDER_TEXT)
    held = {"LogFormat": log_format, "LogGroup": given.get("LogGroup") or f"/aws/lambda/{function_name}"}
    if log_format == "JSON":
        held["ApplicationLogLevel"] = given.get("ApplicationLogLevel") or "INFO"
        held["SystemLogLevel"] = given.get("SystemLogLevel") or "INFO"
    return held


def _keep_logging(function: LambdaFunction, held: dict[str, str]) -> None:
    setattr(function, "logging_config", held)
    function.logs_group_name = held["LogGroup"]


def _logging_on_create(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: LambdaFunction, account_id: str, spec: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        held = _logging_config(spec.get("LoggingConfig"), spec.get("FunctionName", ""))  # refused before anything is made
        method(self, account_id, spec, *args, **kwargs)
        _keep_logging(self, held)

    return wrapper


def _logging_in_configuration(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: LambdaFunction, *args: Any, **kwargs: Any) -> dict[str, Any]:
        config: dict[str, Any] = method(self, *args, **kwargs)
        config["LoggingConfig"] = dict(getattr(self, "logging_config", None) or _logging_config(None, self.function_name))
        return config

    return wrapper


def _apply_configuration(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: LambdaFunction, config: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        # What may be refused comes first (the logging, then the size): a refused update changes nothing.
        logging = _logging_config(config["LoggingConfig"], self.function_name) if "LoggingConfig" in config else None
        size = (config.get("EphemeralStorage") or {}).get("Size")
        if size is not None:
            self.ephemeral_storage = size  # moto's setter refuses what Lambda refuses (over 10240)
        mode = (config.get("TracingConfig") or {}).get("Mode")
        if mode is not None:
            self.tracing_config = {"Mode": mode}
        if logging is not None:
            _keep_logging(self, logging)
        if "ImageConfig" in config:
            self.image_config = ImageConfig(config["ImageConfig"] or {})
        return method(self, config, *args, **kwargs)

    return wrapper


def _new_revision() -> str:
    return str(uuid.uuid4())


def _set_revision(function: LambdaFunction, revision: str) -> None:
    """moto's LambdaFunction has no RevisionId: the patch keeps one on each function object."""
    setattr(function, "revision_id", revision)


def _revision(function: LambdaFunction) -> str | None:
    revision: str | None = getattr(function, "revision_id", None)
    return revision


def _revision_on_create(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: LambdaFunction, *args: Any, **kwargs: Any) -> None:
        method(self, *args, **kwargs)
        _set_revision(self, _new_revision())

    return wrapper


def _revision_in_configuration(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: LambdaFunction, *args: Any, **kwargs: Any) -> dict[str, Any]:
        config: dict[str, Any] = method(self, *args, **kwargs)
        config["RevisionId"] = _revision(self)
        return config

    return wrapper


def _revision_on_change(method: Callable[..., Any]) -> Callable[..., Any]:
    """A code or configuration update of a function (or an alias update) gives it a new RevisionId."""
    @functools.wraps(method)
    def wrapper(self: Any, spec: Any = None, *args: Any, **kwargs: Any) -> Any:
        result = method(self, spec, *args, **kwargs)
        if not (isinstance(spec, dict) and spec.get("DryRun")):
            _set_revision(self, _new_revision())
            if isinstance(result, dict) and "RevisionId" in result:  # the configuration it answers with
                result["RevisionId"] = _revision(self)
        return result

    return wrapper


# $LATEST's ARN -> the highest version number it was ever published as (point 8).
_HIGHEST_VERSION: dict[str, int] = {}


def _on_new_version(method: Callable[..., Any]) -> Callable[..., Any]:
    """A publish that makes a version gives it its own copy of what moto's shallow copy shares with
    $LATEST and changes in place, the code (ImageUri) and the environment variables (point 6); a
    number the function never had (point 8); its own RevisionId, and $LATEST a new one (point 3)."""
    @functools.wraps(method)
    def wrapper(self: LambdaStorage, name_or_arn: str, *args: Any, **kwargs: Any) -> Any:
        latest = self.get_function_by_name_or_arn_forbid_qualifier(name_or_arn)
        versions = list(self._functions.get(latest.function_name, {}).get("versions", []))
        version = method(self, name_or_arn, *args, **kwargs)
        if version is None or any(version is v for v in versions):
            return version  # nothing changed since the last publish: moto answers that version
        version.code = copy.deepcopy(version.code)
        version.environment_vars = dict(version.environment_vars or {})
        highest = max([_HIGHEST_VERSION.get(latest.function_arn, 0), *(int(v.version) for v in versions)])
        if int(version.version) <= highest:
            self._arns.pop(version.function_arn, None)
            version.set_version(highest + 1)
            self._arns[version.function_arn] = version
        _HIGHEST_VERSION[latest.function_arn] = int(version.version)
        _set_revision(version, _new_revision())
        _set_revision(latest, _new_revision())
        return version

    return wrapper


# -- Invoke of an Image function (point 7) ---------------------------------------------------

_INVOCATIONS_PATH = re.compile(r"/functions/(?P<name>.+?)/invocations/?$")
INVOCATION_TYPES = ("RequestResponse", "Event", "DryRun")
# On SIGTERM, how long the runs under way get to remove their containers (cloud.py waits 20 s).
STOP_RUNS_SECONDS = 15.0


class _InvokeError(LambdaClientError):
    """An Invoke that could not run, with Lambda's status and error code."""

    def __init__(self, failure: image_invoke.InvokeFailure) -> None:
        super().__init__(failure.code, failure.message)
        self.code = failure.status


def _function_version(function: LambdaFunction) -> image_invoke.FunctionVersion:
    config = function.image_config
    return image_invoke.FunctionVersion(
        name=function.function_name, version=str(function.version), image_uri=str(function.code.get("ImageUri") or ""),
        code_sha256=str(function.code_sha_256 or ""),
        environment={str(k): str(v) for k, v in (function.environment_vars or {}).items()},
        memory_mb=int(function.memory_size), timeout_seconds=float(function.timeout), region=function.region,
        architecture=function.architectures[0],
        overrides=ImageOverrides(tuple(config.entry_point or ()), tuple(config.cmd or ()), config.working_directory or ""))


def _save_log(function: LambdaFunction, lines: tuple[str, ...]) -> None:
    """The execution log in CloudWatch Logs, where moto's own invocations put theirs."""
    function.logs_backend.ensure_log_group(function.logs_group_name)
    function.save_logs("\n".join(lines))


@amz_crc32
def _respond(status: int, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
    # moto's dispatch takes the status from the "status" header, not from the tuple.
    return status, {**headers, "status": str(status)}, body


def _invoke_image(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: LambdaResponse) -> Any:
        match = _INVOCATIONS_PATH.search(self.parsed_url.path)
        qualifier = urllib.parse.parse_qs(self.parsed_url.query).get("Qualifier", [""])[0] or None
        if match is None:
            return method(self)
        function = self.backend.get_function(urllib.parse.unquote(match["name"]), qualifier)
        if function.package_type != "Image":
            return method(self)
        invocation_type = self.headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        if invocation_type not in INVOCATION_TYPES:
            raise InvalidParameterValueException(f"Unsupported InvocationType: {invocation_type}")
        try:
            event = image_invoke.parse_event(self.raw_body)
            version = _function_version(function)
            if invocation_type == "DryRun":
                return _respond(204, {}, b"")
            if invocation_type == "Event":
                image_invoke.run_in_background(version, event, lambda done: _save_log(function, done.log)
                                               if isinstance(done, image_invoke.Outcome) else None)
                return _respond(202, {"X-Amz-Executed-Version": version.version}, b"")
            outcome = image_invoke.invoke(version, event)
        except image_invoke.InvokeFailure as failure:
            raise _InvokeError(failure) from None
        _save_log(function, outcome.log)
        return _respond(200, outcome.headers(tail=self.headers.get("X-Amz-Log-Type") == "Tail"), outcome.payload)

    return wrapper


def _stop_runs_first(handler: Callable[..., Any]) -> Callable[..., Any]:
    """moto's SIGTERM/SIGINT handler exits at once: the runs under way are cancelled first, so that
    their containers are removed."""
    @functools.wraps(handler)
    def wrapper(*args: Any) -> Any:
        image_invoke.stop_runs(STOP_RUNS_SECONDS)
        return handler(*args)

    return wrapper


def _json_body(response: LambdaResponse) -> dict[str, Any]:
    try:
        body = json.loads(response.body or "{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _check_function(response: LambdaResponse, function_name: str, qualifier: str | None, body: dict[str, Any]) -> None:
    function = response.backend.get_function(function_name, qualifier)
    expected = body.get("RevisionId")
    if expected and expected != _revision(function):
        raise PreconditionFailedException(REVISION_MISMATCH)
    code_sha256 = body.get("CodeSha256")  # PublishVersion only
    if code_sha256 and code_sha256 != function.code_sha_256:
        raise InvalidParameterValueException(
            f"CodeSHA256 ({code_sha256}) is different from current CodeSHA256 in $LATEST "
            f"({function.code_sha_256}). Please try again with the current CodeSHA256.")


def _function_precondition(name_from_path: Callable[[str], str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: LambdaResponse) -> Any:
            with _PRECONDITIONS:
                _check_function(self, name_from_path(self.path), self._get_param("Qualifier", None), _json_body(self))
                return method(self)

        return wrapper

    return decorate


def _alias_precondition(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: LambdaResponse) -> Any:
        with _PRECONDITIONS:
            expected = _json_body(self).get("RevisionId")
            if expected:
                function_name = urllib.parse.unquote(self.path.rsplit("/")[-3])
                alias_name = urllib.parse.unquote(self.path.rsplit("/", 2)[-1])
                if expected != self.backend.get_alias(alias_name, function_name).revision_id:
                    raise PreconditionFailedException(REVISION_MISMATCH)
            return method(self)

    return wrapper


def _name_before_last(path: str) -> str:  # /2015-03-31/functions/NAME/code, .../NAME/configuration
    return urllib.parse.unquote(path.rsplit("/", 2)[-2])


def _name_of_versions(path: str) -> str:  # /2015-03-31/functions/NAME/versions
    return urllib.parse.unquote(path.rstrip("/").split("/")[-2])


def patch_moto() -> None:
    for name in ("describe_images", "batch_get_image", "list_images"):
        setattr(ECRBackend, name, _synced_read(getattr(ECRBackend, name)))
    LambdaFunction.update_function_code = _revision_on_change(_apply_architectures(LambdaFunction.update_function_code))  # type: ignore[method-assign]
    # RevisionId (point 3 of the docstring).
    LambdaFunction.__init__ = _revision_on_create(_logging_on_create(LambdaFunction.__init__))  # type: ignore[method-assign]
    LambdaFunction.get_configuration = _revision_in_configuration(_logging_in_configuration(LambdaFunction.get_configuration))  # type: ignore[method-assign]
    # Configuration moto ignores (points 4 and 5), then a new RevisionId (point 3).
    LambdaFunction.update_configuration = _revision_on_change(_apply_configuration(LambdaFunction.update_configuration))  # type: ignore[method-assign]
    LambdaAlias.update = _revision_on_change(LambdaAlias.update)  # type: ignore[method-assign]
    # A version keeps its own code (point 6) and gets its own RevisionId (point 3).
    LambdaStorage.publish_version = _on_new_version(LambdaStorage.publish_version)  # type: ignore[method-assign]
    precondition = _function_precondition(_name_before_last)
    LambdaResponse.update_function_code = precondition(LambdaResponse.update_function_code)  # type: ignore[method-assign]
    LambdaResponse.update_function_configuration = precondition(LambdaResponse.update_function_configuration)  # type: ignore[method-assign]
    LambdaResponse.publish_version = _function_precondition(_name_of_versions)(LambdaResponse.publish_version)  # type: ignore[method-assign]
    LambdaResponse.update_alias = _alias_precondition(LambdaResponse.update_alias)  # type: ignore[method-assign]
    # Invoke of Image functions (point 7); moto.server.main installs this handler for SIGTERM and SIGINT.
    LambdaResponse.invoke = _invoke_image(LambdaResponse.invoke)  # type: ignore[method-assign]
    moto.server.signal_handler = _stop_runs_first(moto.server.signal_handler)


if __name__ == "__main__":
    patch_moto()
    moto_main(sys.argv[1:])
