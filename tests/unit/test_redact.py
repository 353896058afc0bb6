"""No secret in any message: build-arg values and registry passwords are taken out of Docker's
errors in every form a request carries them, and the engine's explanation replaces its request."""

from __future__ import annotations

import collections
import json
import urllib.parse

import docker.errors
import pytest
import requests

from deployer.docker_gateway import _build_failure
from deployer.go_build import engine_said as _explain
from deployer.redact import MASK, build_arg_secrets, credential_secrets, redact

CANARY = "CANARY-7f3e9a"
BUILD_ARGS = {
    "GOPROXY": f"https://ci-user:{CANARY}-proxy@goproxy.example.com/path,direct",
    "NPM_TOKEN": f"{CANARY}-npm \"quoted\" & spaced/ü",
    "GOFLAGS": "off",  # too short to be a secret: left alone
    "TARGETARCH": "arm64",  # set by deployer itself
}


def build_url(args: dict[str, str]) -> str:
    """The URL the docker SDK requests for a build: the build args as URL-encoded JSON."""
    return "http+docker://localhost/v1.41/build?" + urllib.parse.urlencode({"t": "x:y", "buildargs": json.dumps(args)})


def api_error(status: int, url: str, explanation: str | None) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code, response.url, response.reason = status, url, "Bad Request" if status < 500 else "Internal Server Error"
    return docker.errors.APIError(f"{status} error", response=response, explanation=explanation)


def test_only_the_values_deploy_yaml_sets_are_secrets() -> None:
    assert build_arg_secrets(BUILD_ARGS) == (BUILD_ARGS["GOPROXY"], BUILD_ARGS["NPM_TOKEN"], "off")


@pytest.mark.parametrize("form", ["raw", "json", "url-encoded json", "quoted", "url password"])
def test_every_form_of_a_build_arg_value_is_masked(form: str) -> None:
    value = BUILD_ARGS["NPM_TOKEN"]
    shown = {
        "raw": value,
        "json": json.dumps(value)[1:-1],
        "url-encoded json": urllib.parse.quote_plus(json.dumps(value)[1:-1]),
        "quoted": urllib.parse.quote(value, safe=""),
        "url password": f"{CANARY}-proxy",  # the password of the GOPROXY URL, on its own
    }[form]
    message = redact(f"failed: <{shown}> at the end", build_arg_secrets(BUILD_ARGS))
    assert CANARY not in message
    assert message == f"failed: <{MASK}> at the end"


def test_a_build_request_url_loses_every_secret_and_keeps_the_rest() -> None:
    message = redact(build_url(BUILD_ARGS), build_arg_secrets(BUILD_ARGS))
    assert CANARY not in message
    assert "arm64" in message and "GOFLAGS" in message and "NPM_TOKEN" in message


def test_short_values_and_credential_shaped_text() -> None:
    assert redact("GOPROXY=off; offline", ["off", ""]) == "GOPROXY=off; offline"
    assert redact("get https://bob:hunter22@proxy/x: 401") == f"get https://bob:{MASK}@proxy/x: 401"
    assert redact("Authorization: AWS4-HMAC-SHA256 Credential=AKIAX/2026, Signature=abc") == f"Authorization: {MASK}"
    assert redact("url?X-Amz-Signature=abcd&X-Amz-Credential=AKIA") == f"url?X-Amz-Signature={MASK}&X-Amz-Credential={MASK}"
    assert redact("ecr:GetAuthorizationToken failed") == "ecr:GetAuthorizationToken failed"


def test_registry_password_and_its_token_are_masked() -> None:
    secrets = credential_secrets("AWS", "s3cret-password")
    token = credential_secrets("AWS", "s3cret-password")[1]
    assert redact(f"denied: s3cret-password / {token}", secrets) == f"denied: {MASK} / {MASK}"


def test_an_engine_error_is_reduced_to_its_explanation() -> None:
    error = api_error(400, build_url(BUILD_ARGS), "dockerfile parse error line 3: unknown instruction: FORM")
    assert CANARY in str(error)  # what the SDK would have printed
    assert _explain(error) == "dockerfile parse error line 3: unknown instruction: FORM"
    assert _explain(api_error(502, build_url(BUILD_ARGS), None)) == "HTTP 502 Internal Server Error"


def test_a_connection_error_loses_the_request_query() -> None:
    path = build_url(BUILD_ARGS).removeprefix("http+docker://localhost")
    error = requests.exceptions.ConnectionError(f"Max retries exceeded with url: {path} (Caused by reset)")
    assert CANARY not in _explain(error)
    assert "Max retries exceeded with url: /v1.41/build?... (Caused by reset)" == _explain(error)


def test_a_build_failure_shows_no_build_arg_value_in_headline_or_output() -> None:
    tail = collections.deque([f"Step 3/9 : RUN fetch {BUILD_ARGS['GOPROXY']}", "exit 1"])
    error = _build_failure(f"docker build failed: bad proxy {BUILD_ARGS['NPM_TOKEN']}", tail, BUILD_ARGS)
    assert CANARY not in str(error)
    assert str(error) == f"docker build failed: bad proxy {MASK}\n--- last build output ---\nStep 3/9 : RUN fetch {MASK}\nexit 1"
