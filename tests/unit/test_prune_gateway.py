"""The gateway calls prune reads and deletes through, against botocore's Stubber: every page of a
listing is read, an entry that cannot be read is an error (never skipped), a version is deleted
only by its number, and images by digest, a hundred at a time."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterator

import boto3
import pytest
from botocore.stub import Stubber

from deployer.aws import MAX_PAGES, Clients
from deployer.ecr_gateway import EcrGateway
from deployer.lambda_gateway import LambdaGateway
from deployer.errors import AwsError
from deployer.spec import EcrRepository
from deployer.state import AliasTarget, FunctionListing, StoredImage, VersionImage

HEX = "ab" * 32
REPO = EcrRepository("123456789012", "us-east-1", "greet")
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def session() -> boto3.session.Session:
    return boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1")


@pytest.fixture
def lam() -> Iterator[tuple[LambdaGateway, Stubber]]:
    gateway = LambdaGateway(Clients(session()), "us-east-1")
    with Stubber(gateway._client) as stubber:
        yield gateway, stubber
        stubber.assert_no_pending_responses()


@pytest.fixture
def ecr() -> Iterator[tuple[EcrGateway, Stubber]]:
    gateway = EcrGateway(Clients(session()), "us-east-1")
    with Stubber(gateway._client) as stubber:
        yield gateway, stubber
        stubber.assert_no_pending_responses()


def test_list_functions_reads_every_page(lam: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = lam
    stubber.add_response("list_functions", {"Functions": [{"FunctionName": "a", "PackageType": "Image"}], "NextMarker": "m1"}, {})
    stubber.add_response("list_functions", {"Functions": [{"FunctionName": "b", "PackageType": "Zip"}]}, {"Marker": "m1"})
    assert gateway.list_functions() == [FunctionListing("a", "Image"), FunctionListing("b", "Zip")]


def test_a_function_name_that_cannot_be_read_fails_the_listing(lam: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = lam
    stubber.add_response("list_functions", {"Functions": [{"FunctionName": "a\n::error::x"}]}, {})
    with pytest.raises(AwsError, match="lambda:ListFunctions on functions .*no usable a function name"):
        gateway.list_functions()


def test_versions_come_with_their_images_latest_included(lam: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = lam
    stubber.add_response("list_versions_by_function", {"Versions": [
        {"Version": "$LATEST", "PackageType": "Image", "CodeSha256": HEX},
        {"Version": "1", "PackageType": "Image", "CodeSha256": "not a digest"}], "NextMarker": "n"}, {"FunctionName": "fn"})
    stubber.add_response("list_versions_by_function", {"Versions": [{"Version": "2", "PackageType": "Zip", "CodeSha256": "x"}]},
                         {"FunctionName": "fn", "Marker": "n"})
    assert gateway.list_version_images("fn") == [VersionImage("$LATEST", HEX), VersionImage("1", None), VersionImage("2", None, False)]


def test_a_version_that_is_no_number_fails_the_listing(lam: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = lam
    stubber.add_response("list_versions_by_function", {"Versions": [{"Version": "01", "CodeSha256": HEX}]}, {"FunctionName": "fn"})
    with pytest.raises(AwsError, match="no usable a version number"):
        gateway.list_version_images("fn")


def test_a_listing_that_never_ends_is_an_error(lam: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = lam
    stubber.add_response("list_versions_by_function", {"Versions": [], "NextMarker": "again"}, {"FunctionName": "fn"})
    for _ in range(MAX_PAGES - 1):
        stubber.add_response("list_versions_by_function", {"Versions": [], "NextMarker": "again"},
                             {"FunctionName": "fn", "Marker": "again"})
    with pytest.raises(AwsError, match=f"did not end after {MAX_PAGES} pages"):
        gateway.list_version_images("fn")


def test_aliases_name_every_version_they_invoke(lam: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = lam
    stubber.add_response("list_aliases", {"Aliases": [
        {"Name": "live", "FunctionVersion": "7", "RoutingConfig": {"AdditionalVersionWeights": {"6": 0.1}}},
        {"Name": "dev", "FunctionVersion": "$LATEST"}]}, {"FunctionName": "fn"})
    assert gateway.list_alias_targets("fn") == [AliasTarget("live", ("7", "6")), AliasTarget("dev", ("$LATEST",))]


def test_delete_version_names_the_version_and_never_the_function(lam: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = lam
    stubber.add_response("delete_function", {}, {"FunctionName": "fn", "Qualifier": "3"})
    stubber.add_client_error("delete_function", "ResourceNotFoundException", "gone", 404, expected_params={"FunctionName": "fn", "Qualifier": "4"})
    gateway.delete_version("fn", "3")
    gateway.delete_version("fn", "4")  # already gone: fine
    for wrong in ("$LATEST", "", "live", "3 "):
        with pytest.raises(ValueError):
            gateway.delete_version("fn", wrong)


def test_a_refused_version_deletion_is_an_aws_error(lam: tuple[LambdaGateway, Stubber]) -> None:
    gateway, stubber = lam
    stubber.add_client_error("delete_function", "ResourceConflictException", "alias live points at it", 409,
                             expected_params={"FunctionName": "fn", "Qualifier": "3"})
    with pytest.raises(AwsError, match="lambda:DeleteFunction on version 3 of function fn .*ResourceConflictException"):
        gateway.delete_version("fn", "3")


def test_list_images_reads_every_page_and_gathers_tags_by_digest(ecr: tuple[EcrGateway, Stubber]) -> None:
    gateway, stubber = ecr
    where = {"registryId": REPO.account, "repositoryName": REPO.name}
    stubber.add_response("describe_images", {"imageDetails": [
        {"imageDigest": f"sha256:{HEX}", "imageTags": ["src-1"], "imageManifestMediaType": MANIFEST}], "nextToken": "t"}, where)
    stubber.add_response("describe_images", {"imageDetails": [
        {"imageDigest": f"sha256:{HEX}", "imageTags": ["latest\x1b[2J"], "imageManifestMediaType": MANIFEST},
        {"imageDigest": "sha256:" + "cd" * 32, "artifactMediaType": "application/vnd.oci.image.config.v1+json"}]},
        {**where, "nextToken": "t"})
    assert gateway.list_images(REPO) == [
        StoredImage(f"sha256:{HEX}", ("src-1", "(unreadable tag)"), MANIFEST),
        StoredImage("sha256:" + "cd" * 32, (), None, "application/vnd.oci.image.config.v1+json")]


def test_list_images_keeps_the_latest_push_time_of_a_digest_and_none_that_is_unreadable(ecr: tuple[EcrGateway, Stubber]) -> None:
    gateway, stubber = ecr
    early, late = datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 2, 8, 30, tzinfo=timezone.utc)
    stubber.add_response("describe_images", {"imageDetails": [
        {"imageDigest": f"sha256:{HEX}", "imageTags": ["src-1"], "imagePushedAt": late},
        {"imageDigest": f"sha256:{HEX}", "imageTags": ["src-2"], "imagePushedAt": early},
        {"imageDigest": "sha256:" + "cd" * 32, "imageTags": ["src-3"]}]})
    assert [(image.tags, image.pushed_at) for image in gateway.list_images(REPO)] == [
        (("src-1", "src-2"), late), (("src-3",), None)]


def test_batch_delete_image_reports_what_ecr_refused(ecr: tuple[EcrGateway, Stubber]) -> None:
    gateway, stubber = ecr
    digests = [f"sha256:{n:064x}" for n in range(150)]
    where = {"registryId": REPO.account, "repositoryName": REPO.name}
    stubber.add_response("batch_delete_image", {"imageIds": [{"imageDigest": d} for d in digests[:99]], "failures": [
        {"imageId": {"imageDigest": digests[99]}, "failureCode": "ImageReferencedByManifestList", "failureReason": "in an index"}]},
        {**where, "imageIds": [{"imageDigest": d} for d in digests[:100]]})
    stubber.add_response("batch_delete_image", {"imageIds": [{"imageDigest": d} for d in digests[100:149]], "failures": [
        {"imageId": {"imageDigest": digests[149]}, "failureCode": "ImageNotFound", "failureReason": "gone"}]},
        {**where, "imageIds": [{"imageDigest": d} for d in digests[100:]]})
    gone, problems = gateway.batch_delete_image(REPO, digests)
    assert gone == digests[:99] + digests[100:]
    assert [str(p) for p in problems] == [
        f"ecr:BatchDeleteImage on repository greet (123456789012, us-east-1): ImageReferencedByManifestList: in an index "
        f"({digests[99]} was not deleted)"]


def test_a_push_time_without_a_zone_or_of_another_type_is_not_believed(ecr: tuple[EcrGateway, Stubber]) -> None:
    gateway, stubber = ecr
    stubber.add_response("describe_images", {"imageDetails": [
        {"imageDigest": f"sha256:{HEX}", "imageTags": ["src-1"], "imagePushedAt": datetime(2026, 11, 2, 8, 30)}]})
    [image] = gateway.list_images(REPO)
    assert image.pushed_at is None, "a naive time cannot be compared with the clock: prune keeps the image as recent"
