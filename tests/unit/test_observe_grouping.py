"""observe says one problem once, naming every function it hit: grouped by the failed call."""

from __future__ import annotations

from pathlib import Path

from deployer.errors import AwsError, BuildContextError, Diagnostic
from deployer.observe import grouped


def denied(name: str) -> AwsError:
    # AWS quotes the resource's ARN: the messages differ, the problem is the same.
    return AwsError(Diagnostic(f"AccessDeniedException: not authorized on arn:aws:lambda:us-east-1:1:function:{name}; "
                               "the caller lacks this IAM permission", operation="lambda:GetFunction",
                               resource=f"function {name} (us-east-1)", code="AccessDeniedException"))


def test_the_same_refused_call_is_one_line_for_every_function() -> None:
    lines = grouped([(n, denied(n)) for n in ("a", "b", "c")])
    assert lines == ["a, b, c: lambda:GetFunction: AccessDeniedException: not authorized on "
                     "arn:aws:lambda:us-east-1:1:function:a; the caller lacks this IAM permission"]


def test_one_function_keeps_its_resource_and_other_codes_are_other_problems() -> None:
    throttled = AwsError(Diagnostic("TooManyRequestsException: slow down", operation="lambda:GetFunction",
                                    resource="function d (us-east-1)", code="TooManyRequestsException"))
    lines = grouped([("a", denied("a")), ("d", throttled)])
    assert lines == ["a: lambda:GetFunction on function a (us-east-1): AccessDeniedException: not authorized on "
                     "arn:aws:lambda:us-east-1:1:function:a; the caller lacks this IAM permission",
                     "d: lambda:GetFunction on function d (us-east-1): TooManyRequestsException: slow down"]


def test_other_errors_are_grouped_by_message_and_keep_their_lines() -> None:
    problem = BuildContextError(Diagnostic.at(Path("fn/go.mod"), 3, 0, "bad replace; fix it"),
                                Diagnostic("second line"))
    assert grouped([("a", problem), ("b", problem)]) == ["a, b: fn/go.mod:3: bad replace; fix it\n    second line"]
