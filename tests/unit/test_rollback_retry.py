"""A rollback's UpdateAlias whose answer was lost: botocore sends it again with the same
RevisionId, which Lambda refuses because our first call moved the alias. The rollback reads the
alias then, and is done when it points at its target; any other refusal stays a refusal."""

from __future__ import annotations

from typing import Iterator

import boto3
import pytest
from botocore.stub import Stubber

from deployer.app import do_rollback
from deployer.aws import Clients
from deployer.errors import DeployerError
from deployer.history import Rollback

PLANNED = Rollback("fn", "us-east-1", "live", current="3", target="2", image=None, revision_id="rev-3")


@pytest.fixture
def stubbed() -> Iterator[tuple[Clients, Stubber]]:
    clients = Clients(boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1"))
    with Stubber(clients.client("lambda", "us-east-1")) as stubber:
        yield clients, stubber
        stubber.assert_no_pending_responses()


def refused_update(stubber: Stubber) -> None:
    stubber.add_client_error("update_alias", "PreconditionFailedException", "The Revision Id provided does not match the latest "
                             "Revision Id.", 412, expected_params={"FunctionName": "fn", "Name": "live", "FunctionVersion": "2",
                                                                   "RevisionId": "rev-3", "Description": "deployer rollback; live was 3",
                                                                   "RoutingConfig": {"AdditionalVersionWeights": {}}})


def test_a_refused_retry_of_a_move_that_landed_is_a_rollback_done(stubbed: tuple[Clients, Stubber]) -> None:
    clients, stubber = stubbed
    refused_update(stubber)
    stubber.add_response("list_aliases", {"Aliases": [{"Name": "live", "FunctionVersion": "2"}]}, {"FunctionName": "fn"})
    do_rollback(PLANNED, clients)


@pytest.mark.parametrize("aliases", [
    [{"Name": "live", "FunctionVersion": "4"}],  # another release moved it
    [{"Name": "live", "FunctionVersion": "2", "RoutingConfig": {"AdditionalVersionWeights": {"3": 0.5}}}],  # half elsewhere
    [{"Name": "beta", "FunctionVersion": "2"}],  # the alias is gone; another one is on the target
])
def test_an_alias_moved_elsewhere_meanwhile_stays_a_refusal(stubbed: tuple[Clients, Stubber], aliases: list[dict[str, object]]) -> None:
    clients, stubber = stubbed
    refused_update(stubber)
    stubber.add_response("list_aliases", {"Aliases": aliases}, {"FunctionName": "fn"})
    with pytest.raises(DeployerError, match="moved since it was read"):
        do_rollback(PLANNED, clients)


def test_an_alias_that_cannot_be_read_back_keeps_the_refusal_and_says_why_it_was_not_checked(
        stubbed: tuple[Clients, Stubber]) -> None:
    clients, stubber = stubbed
    refused_update(stubber)
    stubber.add_client_error("list_aliases", "AccessDeniedException", "not authorized to perform: lambda:ListAliases", 403)
    with pytest.raises(DeployerError) as refused:
        do_rollback(PLANNED, clients)
    message = str(refused.value)
    assert "moved since it was read (another release or rollback); nothing changed: run rollback again" in message
    assert "(whether an earlier attempt of this call landed could not be read: lambda:ListAliases" in message
    assert "AccessDeniedException" in message


def test_a_rollback_sends_all_traffic_to_its_target_clearing_a_canary_s_weights(stubbed: tuple[Clients, Stubber]) -> None:
    clients, stubber = stubbed
    stubber.add_response("update_alias", {"Name": "live", "FunctionVersion": "2"},
                         {"FunctionName": "fn", "Name": "live", "FunctionVersion": "2", "RevisionId": "rev-3",
                          "Description": "deployer rollback; live was 3", "RoutingConfig": {"AdditionalVersionWeights": {}}})
    do_rollback(PLANNED, clients)
