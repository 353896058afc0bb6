"""The local cloud's Lambda keeps a RevisionId as real Lambda does (tests/localcloud/moto_main.py):
it changes on every change of the function, and the four calls that take it as a precondition
refuse a stale one with PreconditionFailedException (HTTP 412) and change nothing."""

from __future__ import annotations

from typing import Any, Callable

import botocore.exceptions
import pytest

from tests.conftest import ImageFunction
from tests.localcloud.images import PushedImage

pytestmark = pytest.mark.integration


def revision(lambda_client: Any, name: str) -> str:
    value = lambda_client.get_function(FunctionName=name)["Configuration"]["RevisionId"]
    assert value == lambda_client.get_function_configuration(FunctionName=name)["RevisionId"]
    return str(value)


def refused_as_stale(call: Callable[[], Any]) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    error = caught.value.response
    assert error["Error"]["Code"] == "PreconditionFailedException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_revision_id_changes_with_code_configuration_and_publish(
        make_image_function: Callable[..., ImageFunction], push_image: Callable[..., PushedImage], lambda_client: Any) -> None:
    fn = make_image_function("arm64")
    other = push_image(fn.repository, "other", marker=f"other {fn.name}")
    seen = [revision(lambda_client, fn.name)]

    answer = lambda_client.update_function_code(FunctionName=fn.name, ImageUri=other.lambda_uri, RevisionId=seen[-1])
    seen.append(revision(lambda_client, fn.name))
    assert answer["RevisionId"] == seen[-1]
    answer = lambda_client.update_function_configuration(FunctionName=fn.name, Description="changed", RevisionId=seen[-1])
    seen.append(revision(lambda_client, fn.name))
    assert answer["RevisionId"] == seen[-1]
    version = lambda_client.publish_version(FunctionName=fn.name, RevisionId=seen[-1])
    seen.append(revision(lambda_client, fn.name))

    assert len(set(seen)) == 4, seen
    assert version["RevisionId"] not in seen  # a version has its own
    assert lambda_client.get_function(FunctionName=fn.name)["Configuration"]["CodeSha256"] == other.code_sha256


def test_stale_revision_id_is_refused_by_every_call_that_takes_it_and_changes_nothing(
        make_image_function: Callable[..., ImageFunction], push_image: Callable[..., PushedImage], lambda_client: Any) -> None:
    fn = make_image_function("arm64")
    other = push_image(fn.repository, "other", marker=f"other {fn.name}")
    stale = revision(lambda_client, fn.name)
    lambda_client.update_function_configuration(FunctionName=fn.name, Description="outside change")
    current = revision(lambda_client, fn.name)
    assert current != stale

    refused_as_stale(lambda: lambda_client.update_function_code(FunctionName=fn.name, ImageUri=other.lambda_uri, RevisionId=stale))
    refused_as_stale(lambda: lambda_client.update_function_configuration(FunctionName=fn.name, Description="lost", RevisionId=stale))
    refused_as_stale(lambda: lambda_client.publish_version(FunctionName=fn.name, RevisionId=stale))

    config = lambda_client.get_function(FunctionName=fn.name)["Configuration"]
    assert (config["CodeSha256"], config["Description"], config["RevisionId"]) == (fn.image.code_sha256, "outside change", current)
    assert [v["Version"] for v in lambda_client.list_versions_by_function(FunctionName=fn.name)["Versions"]] == ["$LATEST"]


def test_alias_update_takes_the_alias_revision_id_as_precondition(
        make_image_function: Callable[..., ImageFunction], lambda_client: Any) -> None:
    fn = make_image_function("arm64")
    version = lambda_client.publish_version(FunctionName=fn.name)["Version"]
    alias = lambda_client.create_alias(FunctionName=fn.name, Name="live", FunctionVersion=version)

    moved = lambda_client.update_alias(FunctionName=fn.name, Name="live", Description="first", RevisionId=alias["RevisionId"])

    assert moved["RevisionId"] != alias["RevisionId"]
    refused_as_stale(lambda: lambda_client.update_alias(FunctionName=fn.name, Name="live", Description="lost",
                                                        RevisionId=alias["RevisionId"]))
    assert lambda_client.get_alias(FunctionName=fn.name, Name="live")["Description"] == "first"


def test_publish_refuses_a_code_sha256_that_is_not_latest(
        make_image_function: Callable[..., ImageFunction], lambda_client: Any) -> None:
    fn = make_image_function("arm64")

    with pytest.raises(botocore.exceptions.ClientError) as caught:
        lambda_client.publish_version(FunctionName=fn.name, CodeSha256="0" * 64)

    assert caught.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert lambda_client.publish_version(FunctionName=fn.name, CodeSha256=fn.image.code_sha256)["Version"] == "1"
