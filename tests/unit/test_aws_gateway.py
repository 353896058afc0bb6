"""The Lambda gateway's update wait, against botocore's own Stubber (no network, no patching)."""

from __future__ import annotations

from typing import Any, Iterator

import boto3
import pytest
from botocore.stub import Stubber

from deployer.aws import Clients, LambdaGateway
from deployer.errors import AwsError


@pytest.fixture
def stubbed() -> Iterator[tuple[LambdaGateway, Stubber]]:
    session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1")
    gateway = LambdaGateway(Clients(session), "us-east-1")
    with Stubber(gateway._client) as stubber:
        yield gateway, stubber


def config(status: str, reason: str | None = None) -> dict[str, Any]:
    configuration: dict[str, Any] = {"FunctionName": "fn", "LastUpdateStatus": status}
    if reason:
        configuration["LastUpdateStatusReason"] = reason
    return {"Configuration": configuration}


def test_wait_polls_until_the_update_succeeds(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    for status in ("InProgress", "InProgress", "Successful"):
        stubber.add_response("get_function", config(status), {"FunctionName": "fn"})
    sleeps: list[float] = []
    gateway.wait_updated("fn", sleeps.append)
    assert sleeps == [2.0, 2.0]
    stubber.assert_no_pending_responses()


def test_wait_fails_fast_with_lambdas_reason(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response("get_function", config("InProgress"), {"FunctionName": "fn"})
    stubber.add_response("get_function", config("Failed", "The image manifest is not supported"), {"FunctionName": "fn"})
    with pytest.raises(AwsError) as failure:
        gateway.wait_updated("fn", lambda seconds: None)
    assert str(failure.value) == ("function fn: update did not succeed (LastUpdateStatus Failed): "
                                  "The image manifest is not supported")


def test_wait_gives_up_at_its_deadline(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_response("get_function", config("InProgress"), {"FunctionName": "fn"})
    with pytest.raises(AwsError, match=r"update did not succeed \(LastUpdateStatus InProgress\)"):
        gateway.wait_updated("fn", lambda seconds: None, timeout_seconds=0)


def test_access_denied_while_waiting_is_an_aws_error(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = stubbed
    stubber.add_client_error("get_function", "AccessDeniedException", "not allowed", 403, expected_params={"FunctionName": "fn"})
    with pytest.raises(AwsError, match="AccessDeniedException: not allowed; the caller lacks this IAM permission"):
        gateway.wait_updated("fn", lambda seconds: None)


def test_values_aws_returns_are_checked_at_the_edge(stubbed: tuple[LambdaGateway, Stubber]) -> None:
    # A hostile or broken endpoint: identifiers that are not one printable line, a digest that
    # is not one, are never shown or acted on. AWS's own words (the reason) are kept for renderers.
    gateway, stubber = stubbed
    stubber.add_response("get_function", {"Configuration": {
        "FunctionName": "fn", "PackageType": "Image", "CodeSha256": "ab\n::error::forged",
        "Architectures": ["arm64", "x86_64\u2028::add-mask::x"], "RevisionId": "r1\n::error::forged",
        "State": "Active", "LastUpdateStatus": "Failed", "LastUpdateStatusReason": "broke\n::error::shown inert",
    }}, {"FunctionName": "fn"})
    state = gateway.get_function("fn")
    assert (state.code_sha256, state.architectures, state.revision_id) == (None, ("arm64",), None)
    assert (state.state, state.last_update_status) == ("Active", "Failed")
    assert state.last_update_reason == "broke\n::error::shown inert"
