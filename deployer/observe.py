"""observe: Spec -> (Desired, Observed) per function. Read-only.

For each function: compute the source digest from the build context's layout (files are hashed
where they are; nothing is copied) to learn the content tag, then ask Lambda what runs and ECR
whether that tag exists. Functions are observed in parallel in a bounded pool; the per-region
boto3 clients are shared.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from deployer.aws import Clients, EcrGateway, LambdaGateway
from deployer.layout import source_digest_of
from deployer.digest import content_tag
from deployer.errors import DeployerError
from deployer.observed import Desired, Observed
from deployer.spec import FunctionSpec, Spec

MAX_WORKERS = 16  # enough to hide AWS latency; small enough to stay under API rate limits


def desired_state(fn: FunctionSpec, clients: Clients) -> Desired:
    """What deploy.yaml asks for `fn`, with the content tag of its current source."""
    digest = source_digest_of(fn)  # no copy: plan needs only the digest; apply re-checks it
    tag = content_tag(digest)
    account = fn.repository.account or clients.account(fn.region)
    return Desired(
        name=fn.name,
        region=fn.region,
        repository_uri=fn.repository.uri(account),
        content_tag=tag,
        source_digest=digest,
        architecture=fn.architecture,
        platform=fn.platform,
        spec_file=str(fn.location.file),
    )


def observe_function(fn: FunctionSpec, clients: Clients) -> tuple[Desired, Observed]:
    desired = desired_state(fn, clients)
    function = LambdaGateway(clients, fn.region).get_function(fn.name)
    image = EcrGateway(clients, fn.region).describe_image(fn.repository.name, desired.content_tag)
    return desired, Observed(function, image)


def observe(spec: Spec, clients: Clients, workers: int = MAX_WORKERS) -> list[tuple[Desired, Observed]]:
    """Observe every function; if any fail, report all failures together (by function name)."""
    functions: Sequence[FunctionSpec] = spec.functions
    if not functions:
        return []
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(functions))))
    try:
        futures = [(fn, pool.submit(observe_function, fn, clients)) for fn in functions]
        results: list[tuple[Desired, Observed]] = []
        failures: dict[str, list[str]] = {}
        for fn, future in futures:
            try:
                results.append(future.result())
            except DeployerError as exc:
                # The same problem for many functions (no credentials, endpoint down) is said
                # once: group on the message with the function's name taken out.
                generic = re.sub(rf"(?<![\w-]){re.escape(fn.name)}(?![\w-])", "<function>", str(exc))
                failures.setdefault(generic, []).append(fn.name)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # read-only work: nothing to wait for
        raise
    pool.shutdown(wait=True)
    if failures:
        # One line per distinct problem: a missing profile is said once, not once per function.
        lines = [f"{_names(names)}: " + "\n    ".join(message.replace("<function>", names[0] if len(names) == 1 else "<function>")
                                                      .splitlines()) for message, names in failures.items()]
        raise DeployerError("cannot plan:\n  " + "\n  ".join(lines))
    return results


def _names(names: list[str], shown: int = 8) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
