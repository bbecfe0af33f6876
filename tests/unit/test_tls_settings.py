"""TLS settings and the front's generated nginx config: the pure parts, without nginx running."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack import tls_front
from devstack.common import InfraError
from treasury.settings import ConfigError, RuntimeSettings


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    for name in ("server.pem", "server.key", "ca.pem"):
        (tmp_path / name).write_text("-----BEGIN-----\n")
    return {"TLS_CERT_FILE": str(tmp_path / "server.pem"), "TLS_KEY_FILE": str(tmp_path / "server.key"),
            "TLS_CLIENT_CA_FILE": str(tmp_path / "ca.pem")}


def test_tls_is_off_by_default_and_never_reaches_other_processes(files: dict[str, str]) -> None:
    plain = RuntimeSettings.from_env({})
    assert not plain.tls_enabled and tls_front.TlsFiles.from_settings(plain) is None
    assert (plain.tls_host, plain.tls_port) == ("127.0.0.1", 8443)

    with_tls = RuntimeSettings.from_env({**files, "TLS_PORT": "0", "TLS_HOST": "0.0.0.0"})
    assert with_tls.tls_enabled and with_tls.tls_port == 0
    assert tls_front.TlsFiles.from_settings(with_tls) == tls_front.TlsFiles(
        Path(files["TLS_CERT_FILE"]), Path(files["TLS_KEY_FILE"]), Path(files["TLS_CLIENT_CA_FILE"]))
    # replicas and actors get the rest of the settings, never the front's files
    assert not [key for key in with_tls.as_env() if key.startswith("TLS_")]
    assert with_tls.as_env()["SERVE_PORT"] == "8000"


def test_relative_paths_become_absolute(files: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(files["TLS_CERT_FILE"]).parent)
    settings = RuntimeSettings.from_env(
        {"TLS_CERT_FILE": "server.pem", "TLS_KEY_FILE": "server.key", "TLS_CLIENT_CA_FILE": "ca.pem"})
    assert settings.tls_cert_file == Path(files["TLS_CERT_FILE"]).resolve()


@pytest.mark.parametrize(
    ("drop", "extra", "message"),
    [
        ("TLS_KEY_FILE", {}, "TLS_KEY_FILE: required with the other TLS files"),
        ("TLS_CLIENT_CA_FILE", {}, "TLS_CLIENT_CA_FILE: required with the other TLS files"),
        (None, {"TLS_CERT_FILE": "/nonexistent/server.pem"}, "TLS_CERT_FILE: .*/nonexistent/server.pem is not a file"),
        (None, {"TLS_PORT": "70000"}, "TLS_PORT: Input should be less than or equal to 65535"),
        (None, {"TLS_PORT": "https"}, "TLS_PORT: Input should be a valid integer"),
    ],
)
def test_bad_tls_settings_name_the_key(files: dict[str, str], drop: str | None, extra: dict[str, str],
                                       message: str) -> None:
    env = {k: v for k, v in files.items() if k != drop} | extra
    with pytest.raises(ConfigError, match=message):
        RuntimeSettings.from_env(env)


def test_unreadable_file_is_refused(files: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.access", lambda path, mode: False)
    with pytest.raises(ConfigError, match=r"TLS_CERT_FILE: .*is not readable"):
        RuntimeSettings.from_env(files)


def test_rendered_config_pins_tls13_and_requires_client_certificates(tmp_path: Path) -> None:
    paths = tls_front.paths(tmp_path)
    files = tls_front.TlsFiles(Path("/c/server.pem"), Path("/c/server.key"), Path("/c/ca.pem"))
    conf = tls_front.render_conf(paths, files, host="127.0.0.1", port=8443, upstream_host="127.0.0.1",
                                 upstream_port=8000)
    lines = {line.strip() for line in conf.splitlines()}
    assert "ssl_protocols TLSv1.3;" in lines
    assert "ssl_verify_client on;" in lines and "ssl_conf_command VerifyMode Peer,Require;" in lines
    assert 'ssl_client_certificate "/c/ca.pem";' in lines and 'ssl_certificate_key "/c/server.key";' in lines
    assert "listen 127.0.0.1:8443 ssl;" in lines and "server 127.0.0.1:8000;" in lines
    assert "proxy_set_header X-Client-Subject $ssl_client_s_dn;" in lines
    assert "proxy_set_header X-Request-ID $request_id;" in lines
    assert f'pid "{paths.root / "nginx.pid"}";' in lines and "daemon off;" in lines
    # nothing nginx writes lands outside the stack home
    assert all(str(tmp_path) in line for line in lines if "_temp_path" in line or line.startswith("access_log"))


def test_the_pull_front_gets_its_upstream_and_routes_only_when_it_runs(tmp_path: Path) -> None:
    files = tls_front.TlsFiles(Path("/c/server.pem"), Path("/c/server.key"), Path("/c/ca.pem"))
    common = {"host": "127.0.0.1", "port": 8443, "upstream_host": "10.0.0.9", "upstream_port": 8000}
    alone = tls_front.render_conf(tls_front.paths(tmp_path), files, **common)  # type: ignore[arg-type]
    assert "upstream pull" not in alone and "sweep-intent" not in alone
    split = {line.strip() for line in tls_front.render_conf(tls_front.paths(tmp_path), files, pull_port=8001,
                                                            **common).splitlines()}  # type: ignore[arg-type]
    assert {"upstream pull {", "server 10.0.0.9:8001;", "server 10.0.0.9:8000;"} <= split
    assert {"location ~ ^/sweep-intent(/|$) {", "proxy_pass http://pull;", "location = /balances {",
            "proxy_pass http://$treasury_balances_upstream;", "POST pull;", "default serve;"} <= split
    # every location forwards the verified subject
    assert sum(1 for line in split if line == "proxy_set_header X-Client-Subject $ssl_client_s_dn;") == 1
    rendered = tls_front.render_conf(tls_front.paths(tmp_path), files, pull_port=8001, **common)  # type: ignore[arg-type]
    assert rendered.count("proxy_set_header X-Client-Subject $ssl_client_s_dn;") == 3


def test_the_front_lets_through_what_the_api_accepts_so_the_api_says_413(tmp_path: Path) -> None:
    """A statement under REST_MAX_BODY_BYTES passes nginx; one over it meets the API's own JSON 413."""
    files = tls_front.TlsFiles(Path("/c/server.pem"), Path("/c/server.key"), Path("/c/ca.pem"))
    conf = tls_front.render_conf(tls_front.paths(tmp_path), files, host="127.0.0.1", port=8443,
                                 upstream_host="127.0.0.1", upstream_port=8000, max_body_bytes=80_000_000)
    lines = {line.strip() for line in conf.splitlines()}
    assert f"client_max_body_size {80_000_000 + tls_front.BODY_MARGIN_BYTES};" in lines
    default = tls_front.render_conf(tls_front.paths(tmp_path), files, host="127.0.0.1", port=8443,
                                    upstream_host="127.0.0.1", upstream_port=8000)
    limit = RuntimeSettings().rest_max_body_bytes
    assert f"client_max_body_size {limit + tls_front.BODY_MARGIN_BYTES};" in default


def test_paths_nginx_cannot_quote_are_refused(tmp_path: Path) -> None:
    files = tls_front.TlsFiles(Path('/c/"x.pem'), Path("/c/server.key"), Path("/c/ca.pem"))
    with pytest.raises(InfraError, match="contains a quote"):
        tls_front.render_conf(tls_front.paths(tmp_path), files, host="127.0.0.1", port=1, upstream_host="127.0.0.1",
                              upstream_port=2)


@pytest.mark.parametrize(("serve_host", "upstream"), [
    ("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("", "127.0.0.1"), ("10.1.2.3", "10.1.2.3"),
    ("api.internal", "api.internal"),
])
def test_upstream_of_a_serve_bound_everywhere_is_loopback(serve_host: str, upstream: str) -> None:
    assert RuntimeSettings(serve_host=serve_host).local_serve_host == upstream


def test_state_file_is_only_a_cache(tmp_path: Path) -> None:
    paths = tls_front.paths(tmp_path)
    assert tls_front.load_state(paths) == tls_front.FrontState()
    paths.root.mkdir()
    for text in ("not json", "[1, 2]", '{"port": "x", "pid": true, "host": 1}'):
        paths.state.write_text(text)
        assert tls_front.load_state(paths) == tls_front.FrontState()
    paths.state.write_text('{"port": 8443, "pid": 12, "host": "127.0.0.1", "upstream": "127.0.0.1:8000"}')
    assert tls_front.load_state(paths) == tls_front.FrontState(8443, 12, "127.0.0.1", "127.0.0.1:8000")
    # pid 12 is not an nginx of this home: reported as not running, and stop leaves it alone
    assert tls_front.status(tmp_path)["running"] is False
    tls_front.stop(tmp_path)
    assert tls_front.load_state(paths).pid is None


def test_stop_without_a_front_is_harmless(tmp_path: Path) -> None:
    tls_front.stop(tmp_path / "never-started")
    assert not (tmp_path / "never-started").exists()


def test_missing_nginx_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr(tls_front, "NGINX_CANDIDATES", ())
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(InfraError, match="nginx not found: run `sudo apt-get install -y nginx`"):
        tls_front.find_nginx()
