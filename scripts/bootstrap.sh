#!/usr/bin/env bash
# Installs what the project needs on a fresh machine, and nothing twice:
# Debian packages (Java 17, Maven, PostgreSQL, nginx, haproxy, openssl, Prometheus, Chromium) when missing, then a
# virtualenv in .venv with the package and its dev extra. Safe to run again; a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# nginx is the REST API's TLS 1.3 / mTLS front; openssl makes the development certificates.
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
# haproxy: Serve's front in Ray's HAProxy mode (SERVE_FRONT=haproxy, serve_app/rest/serve_front.py).
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
# chromium: the headless browser of tests/integration/test_docs_browser.py (Playwright drives it;
# Playwright's own browser download is never used).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing ${need_apt[*]}; install them with apt-get (needs root)" >&2
    exit 1
  fi
  echo "bootstrap: installing ${need_apt[*]} with apt-get" >&2
  # Package scripts must not start system services (postgresql, prometheus on :9090): the project
  # starts its own on free ports. A policy-rc.d answering 101 forbids it; ours is removed afterwards.
  own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    own_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # no recommends: prometheus would pull in node-exporter, another system service
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  if [ -n "$own_policy" ]; then
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[dev]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# devstack/ (the local stack's launchers) is development tooling, not part of the package: the
# development virtualenv finds it through a path entry for the checkout, so that `treasury-orch
# infra` and `run` work here while the wheel and the image stay without it.
purelib=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ "$(cat "$purelib/treasury-devstack.pth" 2>/dev/null)" != "$PWD" ]; then
  echo "$PWD" >"$purelib/treasury-devstack.pth"
fi

