#!/usr/bin/env bash
# Set up device-sim on a fresh Debian 12 machine (idempotent), then run the demo or the tests.
#   bash scripts/bootstrap.sh demo [device-sim demo options]   -> one onboarding on virtual adapters
#   bash scripts/bootstrap.sh test [pytest options]            -> ruff + mypy, then the test suite
# Installs, when missing (as root), and says so: Debian's dbus (dbus-daemon for the private bus)
# and python3-venv; for the tests also dnsmasq-base (SoftAP DHCP/DNS), udhcpc (the phone's DHCP
# client), iproute2 (network namespaces), chromium (the browser-page test), dbus-bin (dbus-monitor),
# systemd (systemd-analyze verify of the installed unit),
# build-essential, python3-dev, libdbus-1-dev, libglib2.0-dev, pkg-config (to build dbus-python for
# python-dbusmock) and libssl-dev (srp's OpenSSL backend). Then a virtualenv in .venv with the
# package and its test extra (bless, bleak, BlueZoo, playwright, python-dbusmock, ...).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
what=${1:-demo}
shift || true

need_apt=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
command -v dbus-daemon >/dev/null 2>&1 || need_apt+=(dbus)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ "$what" = test ]; then
  command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need_apt+=(dnsmasq-base)  # the binary, without the system service
  command -v udhcpc >/dev/null 2>&1 || [ -x /usr/sbin/udhcpc ] || need_apt+=(udhcpc)
  command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need_apt+=(iproute2)
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  command -v dbus-monitor >/dev/null 2>&1 || need_apt+=(dbus-bin)    # the secrets-on-the-bus test
  command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)  # verifies `service install`'s unit
  # python-dbusmock (the NetworkManager mock) needs dbus-python, built from source here: a C
  # compiler (build-essential), the headers of Debian's python3 (python3-dev), libdbus and GLib.
  # libssl-dev gives the unversioned libssl.so that srp's ctypes/OpenSSL backend loads (the
  # session tests cross-check both SRP backends).
  for pkg in build-essential python3-dev libdbus-1-dev libglib2.0-dev pkg-config libssl-dev; do
    have_pkg "$pkg" || need_apt+=("$pkg")
  done
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing ${need_apt[*]}; run as root or: sudo apt-get install -y ${need_apt[*]}" >&2
    exit 2
  fi
  echo "bootstrap: installing with apt-get: ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  python3 -m venv .venv
fi
# The demo needs the package, BlueZoo and the factory extra; the tests need the test extra (Playwright,
# python-dbusmock, ... whose builds want the apt packages above).
extra=virtual,factory,qa   # qa: device-sim bench's report plots; the demo's --activation makes a factory unit (its self-test reads the QR)
[ "$what" = test ] && extra=test
stamp=.venv/.device-sim-installed-$extra
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing device-sim[$extra] and its dependencies into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[$extra]"
  if [ "$extra" = "test" ]; then
    # Espressif's provisioning client as shipped in esp-rainmaker-cli, driven unmodified by the
    # ESP tests. Without its other dependencies (OpenCV, boto3, esptool, ... for RainMaker's
    # cloud and flashing): the provisioning modules need only bleak, cryptography and protobuf.
    .venv/bin/python -m pip install -q --no-deps "esp-rainmaker-cli==1.14.1"
  fi
  touch "$stamp"
fi

case "$what" in
  demo) exec .venv/bin/device-sim demo "$@" ;;
  test)
    # The code checks first (under a minute): lint, formatting and types of the whole tree,
    # and the package's import rules (downward only, no circle: scripts/check_layers.py).
    # mypy reads tests/ and scripts/ apart: scripts/fuzz.py and the tests/fuzz package share
    # a module name.
    echo "bootstrap: ruff check, ruff format --check, mypy and check_layers" >&2
    .venv/bin/ruff check --quiet device_sim tests scripts examples
    .venv/bin/ruff format --check --quiet device_sim tests scripts examples
    .venv/bin/mypy
    .venv/bin/mypy tests
    .venv/bin/mypy scripts
    .venv/bin/python scripts/check_layers.py
    # The whole run (no pytest options) also checks the package as users get it: sdist and
    # wheel built and accepted by twine, the wheel and examples/app-ci in a fresh virtualenv
    # outside the checkout, the example's tests through the plugin, the demo (about a minute).
    if [ $# -eq 0 ]; then
      echo "bootstrap: scripts/check_package.sh" >&2
      bash scripts/check_package.sh
    fi
    exec .venv/bin/python -m pytest "$@" ;;
  setup) exit 0 ;;
  *) echo "usage: bash scripts/bootstrap.sh demo|test|setup [args]" >&2; exit 2 ;;
esac
