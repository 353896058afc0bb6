"""The built-in Go build through the real CLI, against the local cloud: modules from the local
module proxy (public, and private behind a netrc), go.work workspaces, `deployer build` without
AWS, parallel compiles on one cache volume, --cache-dir, a custom Dockerfile beside it, and the
things that must never happen (a credential in any output, image or file; a change to the source
tree; a compile container left behind).

Most tests use the engine's shared Go cache volume (warm after the first compile). Those that need
empty caches (a private module must really be fetched; a cache to save or restore; parallel
compiles filling one volume) get a volume of their own (DEPLOYER_GO_CACHE_VOLUME), removed at the
end; their functions are small, so that a cold compile stays short.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import docker
import docker.errors
import pytest
from ruamel.yaml import YAML

from tests.conftest import ImageFunction, unique_name
from tests.integration.conftest import Monorepo
from tests.integration.test_apply_cli import Cli, content_tags, ecr_digest, lambda_config, outcomes, output, registry_image_config
from tests.localcloud.cloud import LocalCloud, free_port
from tests.localcloud.goproxy import go_sum_lines

pytestmark = pytest.mark.integration

GREET = "functions/greet"
PRIVATE = "private.example.test/vault"
PRIVATE_ZIP = f"/{PRIVATE}/@v/v0.3.0.zip"
GO_BUILD_LABEL = "dev.deployer.go-build"  # deployer.go_build.LABEL: every compile container carries it

Setup = Callable[..., ImageFunction]


# -- deploy.yaml and Go sources ----------------------------------------------------------------

def write_spec(monorepo: Monorepo, functions: list[dict[str, Any]], go_env: dict[str, str] | None = None) -> Path:
    """root/deploy.yaml. Each function: name, repository, source, and optionally platform and
    `build` (more build keys). `go_env` is the defaults' (none: GOPROXY=off)."""
    entries = []
    for fn in functions:
        platform = fn.get("platform", "linux/arm64")
        runtime = monorepo.env["DEPLOYER_STANDIN_RUNTIME_ARM64" if platform == "linux/arm64" else "DEPLOYER_STANDIN_RUNTIME_AMD64"]
        entries.append({"name": fn["name"], "repository": fn["repository"], "platform": platform,
                        "build": {"source": fn["source"], "runtime_image": runtime, **fn.get("build", {})}})
    build: dict[str, Any] = {"builder_image": monorepo.env["DEPLOYER_STANDIN_BUILDER"]}
    if not any("dockerfile" in fn.get("build", {}) for fn in functions):  # go_env belongs to the Go build only
        build["go_env"] = go_env or {"GOPROXY": "off"}
    path = monorepo.root / "deploy.yaml"
    with path.open("w") as out:
        YAML().dump({"version": 1, "defaults": {"region": "us-east-1", "build": build}, "functions": entries}, out)
    return path


def proxy_env(monorepo: Monorepo, private: bool = False) -> dict[str, str]:
    """go_env for the local module proxy; `private`: also for its private module (GOPRIVATE alone
    would mean "not through the proxy")."""
    env = {"GOPROXY": monorepo.env["DEPLOYER_GOPROXY"]}
    if private:
        env |= {"GOPRIVATE": monorepo.env["DEPLOYER_GOPRIVATE"], "GONOPROXY": "none"}
    return env


def add_vault_function(monorepo: Monorepo, name: str, body: str = 'println(vault.Mask("0123456789"))') -> str:
    """A function requiring the private module; returns its source dir (relative to root)."""
    src = monorepo.root / "functions" / name
    src.mkdir(parents=True)
    (src / "go.mod").write_text(f"module example.com/functions/{name}\n\ngo 1.22\n\nrequire {PRIVATE} v0.3.0\n")
    (src / "go.sum").write_text("\n".join(go_sum_lines(PRIVATE, "v0.3.0")) + "\n")
    (src / "main.go").write_text(f'package main\n\nimport "{PRIVATE}"\n\nfunc main() {{\n\t{body}\n}}\n')
    return f"functions/{name}"


def add_greeting_function(monorepo: Monorepo, name: str) -> str:
    """A small function using the proxy's example.test/greeting and the shared logger; it prints
    `<name>: Hello, Ada!` and exits."""
    src = monorepo.root / "functions" / name
    src.mkdir(parents=True)
    (src / "go.mod").write_text(
        f"module example.com/functions/{name}\n\ngo 1.22\n\n"
        "require (\n\texample.com/shared/logger v0.0.0\n\texample.test/greeting v1.1.0\n)\n\n"
        "require example.test/textcase v1.2.0 // indirect\n\n"
        "replace example.com/shared/logger => ../../shared/logger\n")
    sums = go_sum_lines("example.test/greeting", "v1.1.0") + go_sum_lines("example.test/textcase", "v1.2.0")
    (src / "go.sum").write_text("\n".join(sums) + "\n")
    (src / "main.go").write_text(
        'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/shared/logger"\n\t"example.test/greeting"\n)\n\n'
        f'func main() {{\n\tif _, err := logger.ParseLevel("info"); err != nil {{\n\t\tpanic(err)\n\t}}\n'
        f'\tfmt.Println("{name}: " + greeting.Hello("ada"))\n}}\n')
    return f"functions/{name}"


def append_line(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


# -- what the engine and the module proxy hold -------------------------------------------------------

def tree_state(root: Path) -> dict[str, str]:
    """Every entry below root -> its kind, mode, mtime and content (as tests/unit/test_context.py)."""
    state = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        what = f"{st.st_mode:o} {st.st_mtime_ns}"
        if path.is_symlink():
            what += " -> " + os.readlink(path)
        elif path.is_file():
            what += " " + hashlib.sha256(path.read_bytes()).hexdigest()
        state[path.relative_to(root).as_posix()] = what
    return state


def secret_forms(secret: str) -> dict[str, str]:
    """The secret as written and every base64 form of it: the stretch of a base64 text that only
    the secret's bytes decide, at each of the three byte offsets it can start at (standard and URL
    alphabets). Whatever encodes the secret inside a longer text holds one of them."""
    forms = {"as written": secret}
    raw = secret.encode()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        core = encoded[-(-8 * shift // 6): 8 * (shift + len(raw)) // 6]
        forms[f"base64 at offset {shift}"] = core
        forms[f"base64url at offset {shift}"] = core.replace("+", "-").replace("/", "_")
    return forms


def assert_nowhere(secret: str, places: dict[str, bytes]) -> None:
    for form_name, form in secret_forms(secret).items():
        for where, data in places.items():
            assert form.encode() not in data, f"the password ({form_name}) is in {where}"


def served_since(cloud: LocalCloud, start: int) -> list[tuple[str, int]]:
    assert cloud.goproxy is not None
    return list(cloud.goproxy.served[start:])


def proxy_mark(cloud: LocalCloud) -> int:
    assert cloud.goproxy is not None
    return len(cloud.goproxy.served)


def compile_containers(engine: docker.DockerClient, function: str) -> list[Any]:
    return list(engine.containers.list(all=True, filters={"label": f"{GO_BUILD_LABEL}={function[:64]}"}))


def file_in_image(engine: docker.DockerClient, image: str, path: str) -> bytes:
    """A file of an image, through a container that is never started."""
    container = engine.api.create_container(image, command=["true"])["Id"]
    try:
        chunks, _ = engine.api.get_archive(container, path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            member = tar.next()
            assert member is not None and member.isreg(), path
            f = tar.extractfile(member)
            assert f is not None
            return f.read()
    finally:
        engine.api.remove_container(container, force=True)


# -- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture
def cli(monorepo: Monorepo, tmp_path: Path) -> Cli:
    return Cli(monorepo, tmp_path / "tmpdir")


@pytest.fixture
def engine(local_cloud: LocalCloud) -> Iterator[docker.DockerClient]:
    client = local_cloud.docker()
    yield client
    client.close()


@pytest.fixture
def fresh_volume(engine: docker.DockerClient) -> Iterator[str]:
    """The name of a Go cache volume nobody has yet (deployer makes it); removed at the end."""
    name = f"deployer-test-gocache-{uuid.uuid4().hex[:12]}"
    yield name
    try:
        engine.api.remove_volume(name, force=True)
    except docker.errors.NotFound:
        pass


@pytest.fixture
def built_tags(engine: docker.DockerClient) -> Iterator[list[str]]:
    """Local image tags a test made (deployer build, pulls); removed at the end."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        try:
            engine.images.remove(tag, force=True, noprune=True)
        except docker.errors.ImageNotFound:
            pass


# -- tests -------------------------------------------------------------------------------------------

def test_greet_with_proxy_modules_applies_its_pushed_digest_and_then_plans_no_changes(
        cli: Cli, monorepo: Monorepo, make_image_function: Setup, ecr_client: Any, lambda_client: Any,
        local_cloud: LocalCloud) -> None:
    fn = make_image_function("arm64")
    write_spec(monorepo, [{"name": fn.name, "repository": fn.repository, "source": GREET}], proxy_env(monorepo))
    planned = cli("plan", "--format", "json")
    assert planned.returncode == 0, output(planned)
    (fp,) = json.loads(planned.stdout)["functions"]
    assert fp["reason"]["code"] == "no_image_for_source", fp
    tag = fp["desired"]["content_tag"]

    applied = cli("apply", "--yes")

    assert applied.returncode == 0, output(applied)
    assert outcomes(applied) == {fn.name: "built"}
    config = lambda_config(lambda_client, fn.name)
    assert config["CodeSha256"] == ecr_digest(ecr_client, fn.repository, tag).removeprefix("sha256:")
    assert config["Architectures"] == ["arm64"]
    image = registry_image_config(local_cloud, fn.repository, tag)
    assert (image["os"], image["architecture"]) == ("linux", "arm64")
    again = cli("plan", "--detailed-exitcode")
    assert again.returncode == 0, output(again)
    assert cli.leftover_contexts() == []


@pytest.mark.parametrize("damage, said", [
    ("wrong", "checksum mismatch"),
    ("missing", "missing go.sum entry"),
])
def test_a_wrong_or_missing_go_sum_entry_fails_that_function_with_the_go_commands_words(
        cli: Cli, monorepo: Monorepo, make_image_function: Setup, lambda_client: Any, fresh_volume: str,
        damage: str, said: str) -> None:
    fn = make_image_function("arm64")
    go_sum = monorepo.root / GREET / "go.sum"
    lines = go_sum.read_text().splitlines()
    if damage == "wrong":  # greeting's module hash: another module's, as a tampered go.sum would hold
        textcase = next(ln.split()[2] for ln in lines if ln.startswith("example.test/textcase ") and "/go.mod" not in ln)
        lines = [f"{ln.rsplit(' ', 1)[0]} {textcase}" if ln.startswith("example.test/greeting v1.1.0 h1:") else ln
                 for ln in lines]
    else:
        lines = [ln for ln in lines if not ln.startswith("example.test/greeting ")]
    go_sum.write_text("\n".join(lines) + "\n")
    write_spec(monorepo, [{"name": fn.name, "repository": fn.repository, "source": GREET}], proxy_env(monorepo))

    result = cli("apply", "--yes", env={"DEPLOYER_GO_CACHE_VOLUME": fresh_volume})  # nothing cached: go.sum is checked

    assert result.returncode == 1, output(result)
    assert f"go build of {fn.name} failed (exit code 1)" in result.stdout, output(result)
    assert said in result.stdout, output(result)
    assert lambda_config(lambda_client, fn.name)["CodeSha256"] == fn.image.code_sha256


def test_function_of_a_go_work_workspace_validates_applies_and_deploys(
        cli: Cli, monorepo: Monorepo, make_image_function: Setup, ecr_client: Any, lambda_client: Any) -> None:
    """go.work at the root uses the function and shared/logger; the function's go.mod neither
    requires nor replaces the logger, its code only imports it: Go finds it in the workspace."""
    fn = make_image_function("arm64")
    src = monorepo.root / "functions" / "worky"
    src.mkdir(parents=True)
    (src / "go.mod").write_text("module example.com/functions/worky\n\ngo 1.22\n")
    (src / "main.go").write_text('package main\n\nimport (\n\t"fmt"\n\n\t"example.com/shared/logger"\n)\n\n'
                                 'func main() {\n\tlevel, _ := logger.ParseLevel("warn")\n\tfmt.Println("worky", level)\n}\n')
    (monorepo.root / "go.work").write_text("go 1.22\n\nuse (\n\t./functions/worky\n\t./shared/logger\n)\n")
    write_spec(monorepo, [{"name": fn.name, "repository": fn.repository, "source": "functions/worky"}])

    validated = cli("validate")
    assert validated.returncode == 0, output(validated)
    tag = content_tags(cli)[fn.name]
    applied = cli("apply", "--yes")

    assert applied.returncode == 0, output(applied)
    assert outcomes(applied) == {fn.name: "built"}
    assert lambda_config(lambda_client, fn.name)["CodeSha256"] == \
        ecr_digest(ecr_client, fn.repository, tag).removeprefix("sha256:")


def test_private_module_builds_with_the_netrc_and_fails_clearly_without_it(
        cli: Cli, monorepo: Monorepo, make_image_function: Setup, ecr_client: Any, lambda_client: Any,
        local_cloud: LocalCloud, fresh_volume: str) -> None:
    # A volume of its own: a module cache that holds the module already would build it without credentials.
    fn = make_image_function("arm64")
    source = add_vault_function(monorepo, unique_name("vault-user"))
    write_spec(monorepo, [{"name": fn.name, "repository": fn.repository, "source": source}], proxy_env(monorepo, private=True))
    volume = {"DEPLOYER_GO_CACHE_VOLUME": fresh_volume}

    refused = cli("apply", "--yes", env={**volume, "DEPLOYER_NETRC": ""})

    assert refused.returncode == 1, output(refused)
    assert outcomes(refused) == {fn.name: "failed"}
    assert f"go build of {fn.name} failed" in refused.stdout, output(refused)
    assert "401 Unauthorized" in refused.stdout, output(refused)
    assert lambda_config(lambda_client, fn.name)["CodeSha256"] == fn.image.code_sha256

    tag = content_tags(cli)[fn.name]
    mark = proxy_mark(local_cloud)
    applied = cli("apply", "--yes", env={**volume, "DEPLOYER_NETRC": monorepo.env["DEPLOYER_TEST_NETRC"]})

    assert applied.returncode == 0, output(applied)
    assert outcomes(applied) == {fn.name: "built"}
    assert (PRIVATE_ZIP, 200) in served_since(local_cloud, mark)
    assert lambda_config(lambda_client, fn.name)["CodeSha256"] == \
        ecr_digest(ecr_client, fn.repository, tag).removeprefix("sha256:")


def test_the_netrc_password_appears_in_no_output_plan_image_cache_or_container(
        cli: Cli, monorepo: Monorepo, make_image_function: Setup, local_cloud: LocalCloud, engine: docker.DockerClient,
        fresh_volume: str, built_tags: list[str], tmp_path: Path) -> None:
    password = local_cloud.goproxy_password
    netrc_file = monorepo.env["DEPLOYER_TEST_NETRC"]
    assert password in Path(netrc_file).read_text()
    fn = make_image_function("arm64")
    name = unique_name("vault-canary")
    source = add_vault_function(monorepo, name, body='println(vault.Mask("0123456789"), notDefined)')
    write_spec(monorepo, [{"name": fn.name, "repository": fn.repository, "source": source}], proxy_env(monorepo, private=True))
    cache_dir = tmp_path / "ci-cache"
    env = {"DEPLOYER_GO_CACHE_VOLUME": fresh_volume, "DEPLOYER_CACHE_DIR": str(cache_dir)}
    mark = proxy_mark(local_cloud)

    # Fails after the download, with the credentials given as netrc text this time.
    failed = cli("--debug", "apply", "--yes", "--verbose", env={**env, "DEPLOYER_NETRC": Path(netrc_file).read_text()})
    assert failed.returncode == 1 and "notDefined" in failed.stdout, output(failed)
    assert (PRIVATE_ZIP, 200) in served_since(local_cloud, mark)  # the credentials were used
    (monorepo.root / source / "main.go").write_text(
        f'package main\n\nimport "{PRIVATE}"\n\nfunc main() {{\n\tprintln(vault.Mask("0123456789"))\n}}\n')
    with_netrc = {**env, "DEPLOYER_NETRC": netrc_file}
    planned = cli("--debug", "plan", "--out", "plan.json", env=with_netrc)
    assert planned.returncode == 0, output(planned)
    tag = json.loads((monorepo.root / "plan.json").read_text())["functions"][0]["desired"]["content_tag"]
    applied = cli("--debug", "apply", "--verbose", "plan.json", env=with_netrc)
    assert applied.returncode == 0, output(applied)
    assert outcomes(applied) == {fn.name: "built"}

    pulled = f"{local_cloud.registry_endpoint}/{fn.repository}:{tag}"
    engine.images.pull(f"{local_cloud.registry_endpoint}/{fn.repository}", tag=tag, platform="linux/arm64",
                       auth_config={"username": local_cloud.credentials.username, "password": local_cloud.credentials.password})
    built_tags.append(pulled)
    saved = b"".join(engine.images.get(pulled).save(named=True))
    assert b"bootstrap" in saved  # the layers are there, uncompressed
    places = {f"{what} {stream}": getattr(result, stream).encode()
              for what, result in (("failing apply", failed), ("plan", planned), ("apply", applied))
              for stream in ("stdout", "stderr")}
    places |= {
        "the saved plan": (monorepo.root / "plan.json").read_bytes(),
        "docker save of the pushed image": saved,
        "docker inspect of the pushed image": json.dumps(engine.api.inspect_image(pulled)).encode(),
        "the image config in the registry": json.dumps(registry_image_config(local_cloud, fn.repository, tag)).encode(),
        "the saved Go caches": (cache_dir / "go-cache.tar").read_bytes(),
    }
    assert_nowhere(password, places)
    assert compile_containers(engine, fn.name) == []
    assert engine.containers.list(all=True, filters={"volume": fresh_volume}) == []


def test_build_makes_a_local_image_without_any_aws_call(
        cli: Cli, monorepo: Monorepo, make_image_function: Setup, ecr_client: Any, lambda_client: Any,
        engine: docker.DockerClient, built_tags: list[str]) -> None:
    fn = make_image_function("arm64")
    write_spec(monorepo, [{"name": fn.name, "repository": fn.repository, "source": GREET}], proxy_env(monorepo))
    repositories = ecr_client.describe_repositories()["repositories"]
    images = ecr_client.describe_images(repositoryName=fn.repository)["imageDetails"]
    function = lambda_client.get_function(FunctionName=fn.name)["Configuration"]
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    built = cli("build", env={"AWS_ENDPOINT_URL": dead, "AWS_ENDPOINT_URL_ECR": dead, "AWS_ENDPOINT_URL_LAMBDA": dead,
                              "AWS_ENDPOINT_URL_STS": dead, "DEPLOYER_REGISTRY_ENDPOINT": "127.0.0.1:1"})

    assert built.returncode == 0, output(built)
    tag = built.stdout.strip()
    built_tags.append(tag)
    assert tag.startswith(f"deployer/{fn.name.lower()}:src-"), output(built)
    assert tag.split(":")[1] == content_tags(cli)[fn.name]  # what apply would push
    image = engine.images.get(tag)
    assert image.labels["dev.deployer.function"] == fn.name
    assert image.attrs["Architecture"] == "arm64"
    assert ecr_client.describe_repositories()["repositories"] == repositories
    assert ecr_client.describe_images(repositoryName=fn.repository)["imageDetails"] == images
    assert lambda_client.get_function(FunctionName=fn.name)["Configuration"] == function


def test_functions_sharing_a_module_compile_in_parallel_on_one_fresh_cache_volume(
        cli: Cli, monorepo: Monorepo, local_cloud: LocalCloud, engine: docker.DockerClient, fresh_volume: str,
        built_tags: list[str]) -> None:
    names = [unique_name("hello-a"), unique_name("hello-b")]
    sources = [add_greeting_function(monorepo, n) for n in names]
    # No AWS for build: the repositories need not exist. amd64, so that the binaries run here.
    write_spec(monorepo, [{"name": n, "repository": n, "source": s, "platform": "linux/amd64"} for n, s in zip(names, sources)],
               proxy_env(monorepo))
    volume = {"DEPLOYER_GO_CACHE_VOLUME": fresh_volume}

    first = cli("build", "-j", "2", env=volume)

    assert first.returncode == 0, output(first)
    tags = first.stdout.split()
    built_tags.extend(tags)
    assert [t.split(":")[0] for t in tags] == [f"deployer/{n.lower()}" for n in names], output(first)
    for name, tag in zip(names, tags):
        binary = file_in_image(engine, tag, "/var/runtime/bootstrap")
        ran = subprocess.run([_write_executable(cli.tmpdir / name, binary)], capture_output=True, text=True, timeout=60)
        assert ran.stdout == f"{name}: Hello, Ada!\n", ran

    append_line(monorepo.root / sources[0] / "main.go", "// changed: only this function builds again")
    mark = proxy_mark(local_cloud)
    second = cli("build", "-j", "2", env=volume)

    assert second.returncode == 0, output(second)
    retags = second.stdout.split()
    built_tags.extend(retags)
    assert retags[0] != tags[0] and retags[1] == tags[1], output(second)
    assert f"{tags[1]} is in the engine already: nothing to build" in second.stderr, output(second)
    assert served_since(local_cloud, mark) == []  # the modules came from the volume
    assert compile_containers(engine, names[0]) == [] and compile_containers(engine, names[1]) == []


def _write_executable(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    path.chmod(0o755)
    return str(path)


def test_custom_dockerfile_with_build_args_still_builds_and_deploys(
        cli: Cli, monorepo: Monorepo, make_image_function: Setup, ecr_client: Any, lambda_client: Any,
        local_cloud: LocalCloud) -> None:
    fn = make_image_function("arm64")
    source = monorepo.add_function(unique_name("dockerfile"), ("errors",))
    (monorepo.root / source / "Dockerfile").write_text(
        "ARG BUILDPLATFORM\nARG BUILDER_IMAGE\nARG RUNTIME_IMAGE\nARG TARGETPLATFORM\n"
        "FROM --platform=$BUILDPLATFORM $BUILDER_IMAGE AS build\n"
        "ARG TARGETARCH\nARG GREETING\nWORKDIR /src\nCOPY . .\n"
        'RUN CGO_ENABLED=0 GOOS=linux GOARCH=$TARGETARCH GOPROXY=off go build -trimpath -o /bootstrap . '
        '&& printf "%s" "$GREETING" > /greeting\n'
        "FROM --platform=$TARGETPLATFORM $RUNTIME_IMAGE\nARG GREETING\nLABEL dev.test.greeting=$GREETING\n"
        "COPY --from=build /bootstrap /var/runtime/bootstrap\nCOPY --from=build /greeting /greeting\n"
        'ENTRYPOINT ["/var/runtime/bootstrap"]\n')
    write_spec(monorepo, [{"name": fn.name, "repository": fn.repository, "source": source,
                           "build": {"dockerfile": f"{source}/Dockerfile", "build_args": {"GREETING": "hello from a build arg"}}}])
    tag = content_tags(cli)[fn.name]

    applied = cli("apply", "--yes")

    assert applied.returncode == 0, output(applied)
    assert outcomes(applied) == {fn.name: "built"}
    assert lambda_config(lambda_client, fn.name)["CodeSha256"] == \
        ecr_digest(ecr_client, fn.repository, tag).removeprefix("sha256:")
    image = registry_image_config(local_cloud, fn.repository, tag)
    assert image["architecture"] == "arm64"
    assert image["config"]["Labels"]["dev.test.greeting"] == "hello from a build arg"


def test_plan_apply_and_build_leave_the_source_tree_untouched(
        cli: Cli, monorepo: Monorepo, make_image_function: Setup, built_tags: list[str]) -> None:
    fn = make_image_function("arm64")
    write_spec(monorepo, [{"name": fn.name, "repository": fn.repository, "source": GREET}], proxy_env(monorepo))
    before = tree_state(monorepo.root)

    results = [cli("plan"), cli("apply", "--yes"), cli("build")]

    for result in results:
        assert result.returncode == 0, output(result)
    built_tags.append(results[2].stdout.strip())
    assert tree_state(monorepo.root) == before


def test_cache_dir_saves_the_go_caches_and_restores_them_into_a_new_volume(
        cli: Cli, monorepo: Monorepo, local_cloud: LocalCloud, engine: docker.DockerClient, fresh_volume: str,
        built_tags: list[str], tmp_path: Path) -> None:
    name = unique_name("hello-cached")
    source = add_greeting_function(monorepo, name)
    write_spec(monorepo, [{"name": name, "repository": name, "source": source}], proxy_env(monorepo))
    cache_dir = tmp_path / "ci-cache"
    env = {"DEPLOYER_GO_CACHE_VOLUME": fresh_volume}

    first = cli("build", "--cache-dir", str(cache_dir), env=env)

    assert first.returncode == 0, output(first)
    built_tags.append(first.stdout.strip())
    assert (cache_dir / "go-cache.tar").stat().st_size > 0
    engine.api.remove_volume(fresh_volume)
    append_line(monorepo.root / source / "main.go", "// changed: built again, from the restored caches")
    mark = proxy_mark(local_cloud)

    second = cli("build", "--cache-dir", str(cache_dir), env=env)

    assert second.returncode == 0, output(second)
    built_tags.append(second.stdout.strip())
    assert served_since(local_cloud, mark) == []  # the module cache came back with them
    engine.api.inspect_volume(fresh_volume)  # made again
    assert "restored the Go caches" in second.stderr, output(second)  # said without --verbose


def test_cache_dir_that_is_a_file_is_refused(cli: Cli, monorepo: Monorepo, tmp_path: Path) -> None:
    write_spec(monorepo, [{"name": "greet", "repository": "greet", "source": GREET}], proxy_env(monorepo))
    not_a_dir = tmp_path / "cache-file"
    not_a_dir.write_text("not a directory\n")

    result = cli("build", "--cache-dir", str(not_a_dir))

    assert result.returncode == 1, output(result)
    assert f"--cache-dir {not_a_dir}: not a directory" in result.stderr, output(result)
