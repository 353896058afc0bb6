"""A pull request that controls deploy.yaml and the function's files, built with credentials
given (`deployer build` with DEPLOYER_NETRC set, as a CI job building pull requests would): it
must not make the compile print the netrc or put it into the image (deployer.go_build's
REFUSED_FLAGS). Both ways worked before they were refused: a -toolexec program printed the netrc
base64-encoded, and an -overlay mapped it onto a go:embed'ed file of the binary."""

from __future__ import annotations

import json

import docker
import docker.errors
import pytest

from tests.conftest import unique_name
from tests.integration.conftest import Monorepo
from tests.integration.test_apply_cli import Cli, output
from tests.integration.test_go_builds_cli import assert_nowhere, cli, engine, file_in_image, write_spec  # noqa: F401
from tests.localcloud.cloud import LocalCloud

pytestmark = pytest.mark.integration


def add_plain_function(monorepo: Monorepo, name: str, files: dict[str, str]) -> str:
    src = monorepo.root / "functions" / name
    src.mkdir(parents=True)
    (src / "go.mod").write_text(f"module example.com/functions/{name}\n\ngo 1.22\n")
    for rel, text in {"main.go": 'package main\n\nfunc main() { println("hi") }\n', **files}.items():
        (src / rel).write_text(text)
    return f"functions/{name}"


def test_a_toolexec_program_of_the_pull_request_is_refused_and_prints_no_netrc(
        cli: Cli, monorepo: Monorepo, local_cloud: LocalCloud) -> None:
    name = unique_name("toolexec")
    source = add_plain_function(monorepo, name, {})
    steal = monorepo.root / source / "steal.sh"
    steal.write_text('#!/bin/sh\ncase "$*" in *-V=full*) exec "$@";; esac\n'
                     'base64 /deployer-secrets/netrc | tr -d "\\n" >&2\nexit 1\n')
    steal.chmod(0o755)
    write_spec(monorepo, [{"name": name, "repository": name, "source": source, "platform": "linux/amd64"}],
               {"GOPROXY": "off", "GOFLAGS": "-mod=readonly -toolexec=/src/steal.sh"})

    built = cli("build", env={"DEPLOYER_NETRC": monorepo.env["DEPLOYER_TEST_NETRC"]})

    assert built.returncode == 1, output(built)
    assert "the go build flag '-toolexec=/src/steal.sh' is refused" in built.stderr, output(built)
    assert_nowhere(local_cloud.goproxy_password, {"stdout": built.stdout.encode(), "stderr": built.stderr.encode()})


def test_an_overlay_of_the_pull_request_is_refused_and_embeds_no_netrc(
        cli: Cli, monorepo: Monorepo, local_cloud: LocalCloud, engine: docker.DockerClient) -> None:
    name = unique_name("overlay")
    source = add_plain_function(monorepo, name, {
        "main.go": 'package main\n\nimport _ "embed"\n\n//go:embed creds.txt\nvar creds string\n\nfunc main() { println(creds) }\n',
        "overlay.json": json.dumps({"Replace": {"/src/creds.txt": "/deployer-secrets/netrc"}}),
    })
    write_spec(monorepo, [{"name": name, "repository": name, "source": source, "platform": "linux/amd64",
                           "build": {"go_build_flags": ["-trimpath", "-overlay=overlay.json"]}}])

    built = cli("build", env={"DEPLOYER_NETRC": monorepo.env["DEPLOYER_TEST_NETRC"]})

    if built.returncode == 0:  # what it embedded, before it was refused
        tag = built.stdout.strip()
        try:
            binary = file_in_image(engine, tag, "/var/runtime/bootstrap")
        finally:
            engine.images.remove(tag, force=True, noprune=True)
        assert local_cloud.goproxy_password.encode() not in binary
    assert built.returncode == 1, output(built)
    assert "the go build flag '-overlay=overlay.json' is refused" in built.stderr, output(built)


def test_a_package_in_a_testdata_directory_that_the_function_imports_is_built(
        cli: Cli, monorepo: Monorepo, engine: docker.DockerClient) -> None:
    """Not hostile, but found by the same review: testdata was dropped from every Go build's
    context, and the build then failed on the import."""
    name = unique_name("testdata-import")
    source = add_plain_function(monorepo, name, {
        "main.go": f'package main\n\nimport "example.com/functions/{name}/fixtures/testdata"\n\n'
                   'func main() { println(testdata.Greeting) }\n',
    })
    (monorepo.root / source / "fixtures" / "testdata").mkdir(parents=True)
    (monorepo.root / source / "fixtures" / "testdata" / "greeting.go").write_text('package testdata\n\nconst Greeting = "hi"\n')
    write_spec(monorepo, [{"name": name, "repository": name, "source": source, "platform": "linux/amd64"}])

    built = cli("build")

    assert built.returncode == 0, output(built)
    engine.images.remove(built.stdout.strip(), force=True, noprune=True)
