#!/usr/bin/env bash
# Installs what the demo and the tests need when it is missing: php-fpm,
# php-cli and php-cgi (the demo), and for the tests DokuWiki, the servers of
# the compatibility matrix and two PyPI packages. Sourced by scripts/demo and
# scripts/test; safe to run again (does nothing when all is there).
set -euo pipefail

have_php_fpm() {
  command -v php-fpm >/dev/null 2>&1 && return 0
  compgen -G "/usr/sbin/php-fpm*" >/dev/null 2>&1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs Debian/Ubuntu packages, quietly, after updating the index.
apt_install() {
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Installs a PyPI package for the current user's python3 (pip first, from
# the distribution, when it is missing). A distribution's own Python refuses
# plain pip installs (PEP 668), hence the fallback.
pip_install() {
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip
  fi
  python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}

ensure_php_fpm() {
  if have_php_fpm && command -v php >/dev/null 2>&1 && command -v php-cgi >/dev/null 2>&1; then
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "php-fpm is missing and this is not a Debian/Ubuntu system: install php-fpm and php-cli with your package manager" >&2
    exit 1
  fi
  echo "Installing php-fpm, php-cli and php-cgi (Debian/Ubuntu packages)..." >&2
  apt_install php-fpm php-cli php-cgi
  have_php_fpm || { echo "php-fpm still not found after installing it" >&2; exit 1; }
}

# The php-fpm binary (version-suffixed on Debian: /usr/sbin/php-fpm8.2).
php_fpm_binary() {
  if command -v php-fpm >/dev/null 2>&1; then
    command -v php-fpm
  else
    compgen -G "/usr/sbin/php-fpm*" | sort | tail -n 1
  fi
}

# DokuWiki (Debian package `dokuwiki`, no database): the real PHP application
# that `fcgi serve` is tested with (crates/fcgi-cli/tests/serve_dokuwiki.rs).
# Code in /usr/share/dokuwiki, configuration in /etc/dokuwiki, data in
# /var/lib/dokuwiki; the test copies the last two and changes nothing.
have_dokuwiki() {
  [ -f /usr/share/dokuwiki/doku.php ]
}

ensure_dokuwiki() {
  if have_dokuwiki; then
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "DokuWiki is missing and this is not a Debian/Ubuntu system: its test will be skipped" >&2
    return 0
  fi
  echo "Installing DokuWiki (Debian/Ubuntu package dokuwiki)..." >&2
  apt_install dokuwiki
  have_dokuwiki || { echo "DokuWiki still not found after installing it" >&2; exit 1; }
}

# prometheus_client (PyPI): its Prometheus text parser checks what
# `fcgi exporter` and `fcgi status --format prometheus` print
# (crates/fcgi-cli/tests/exporter.rs).
PROMETHEUS_CLIENT_VERSION=0.26.0

ensure_prometheus_client() {
  if python3 -c 'import prometheus_client.parser' >/dev/null 2>&1; then
    return 0
  fi
  echo "Installing prometheus_client ${PROMETHEUS_CLIENT_VERSION} (PyPI)..." >&2
  pip_install "prometheus_client==${PROMETHEUS_CLIENT_VERSION}"
  python3 -c 'import prometheus_client.parser' || { echo "prometheus_client still missing after installing it" >&2; exit 1; }
}

# The compatibility matrix (crates/fcgi/tests/real_servers.rs,
# crates/fcgi-cli/tests/real_servers.rs): fcgiwrap, Go (net/http/fcgi, built
# by the tests with `go build`), uWSGI with its Python 3 plugin (Debian
# packages) and flup (PyPI). php-cgi comes with ensure_php_fpm.
FLUP_VERSION=1.0.3

have_matrix_servers() {
  command -v fcgiwrap >/dev/null 2>&1 || [ -x /usr/sbin/fcgiwrap ] || return 1
  command -v go >/dev/null 2>&1 || return 1
  command -v uwsgi >/dev/null 2>&1 || return 1
  [ -e /usr/lib/uwsgi/plugins/python3_plugin.so ] || return 1
  python3 -c 'import flup.server.fcgi' >/dev/null 2>&1
}

ensure_matrix_servers() {
  if have_matrix_servers; then
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "fcgiwrap, golang-go, uwsgi and uwsgi-plugin-python3 are missing and this is not a Debian/Ubuntu system: install them with your package manager, and flup with pip" >&2
    exit 1
  fi
  echo "Installing fcgiwrap, golang-go, uwsgi, uwsgi-plugin-python3 (Debian/Ubuntu packages) and flup (PyPI)..." >&2
  apt_install fcgiwrap golang-go uwsgi uwsgi-plugin-python3
  if ! python3 -c 'import flup.server.fcgi' >/dev/null 2>&1; then
    pip_install "flup==${FLUP_VERSION}"
  fi
  have_matrix_servers || { echo "the compatibility matrix's servers are still missing after installing them" >&2; exit 1; }
}
