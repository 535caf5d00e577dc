#!/usr/bin/env bash
# The package as its users get it (issue 26), run by `bootstrap.sh test` before the suite:
#   1. `python -m build` makes an sdist and a wheel from a copy of the tracked tree, and
#      `twine check --strict` accepts both;
#   2. the copy is deleted, and a fresh virtualenv outside the checkout gets the wheel (with the
#      virtual extra) and examples/app-ci (with its test extra) from the package index;
#   3. in a copy of the example, `pytest --fixtures` lists virtual_ble and emulated_device (the
#      plugin comes from the installed wheel's entry point), and the example's tests pass
#      (CI=true: a missing tool fails them, it does not skip them);
#   4. `device-sim demo --json` ends online from a directory that holds no checkout.
# Usage: bash scripts/check_package.sh [PYTHON]   (default: .venv/bin/python, which has build
# and twine from the test extra). Exit status 0 when every step held.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py=${1:-$here/.venv/bin/python}
work=$(mktemp -d /tmp/device-sim-package.XXXXXX)
trap 'rm -rf "$work"' EXIT
say() { echo "check_package: $*" >&2; }

mkdir "$work/src"
(cd "$here" && git ls-files -z | tar --null -T - -cf -) | tar -xf - -C "$work/src"  # links stay links
say "python -m build (sdist + wheel)"
"$py" -m build --outdir "$work/dist" "$work/src" >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }
"$py" -m twine check --strict "$work"/dist/*
cp -r "$here/examples/app-ci" "$work/app-ci"
rm -rf "$work/src"  # nothing may read the source tree any more

wheel=$(ls "$work"/dist/*.whl)
say "fresh virtualenv: $(basename "$wheel")[virtual] and examples/app-ci[test]"
pip_install() {  # quiet unless it fails
  "$work/venv/bin/python" -m pip install -q "$@" >>"$work/pip.log" 2>&1 || { tail -40 "$work/pip.log"; exit 1; }
}
python3 -m venv "$work/venv"
pip_install --upgrade pip
pip_install "$wheel[virtual]"
pip_install "$work/app-ci[test]"

cd "$work/app-ci"
fixtures=$("$work/venv/bin/python" -m pytest -p no:cacheprovider --fixtures)
for name in virtual_ble emulated_device; do
  grep -q "^$name" <<<"$fixtures" || { say "pytest --fixtures does not list $name"; exit 1; }
done
say "pytest --fixtures lists virtual_ble and emulated_device"
rm -rf src  # the example's tests import its installed package, not this copy
CI=true "$work/venv/bin/python" -m pytest -p no:cacheprovider -q
cd "$work"
"$work/venv/bin/device-sim" demo --json >"$work/demo.json"
"$work/venv/bin/python" -c "import json, sys; s = json.load(open(sys.argv[1]))['state']; sys.exit(s != 'online')" "$work/demo.json"
say "device-sim demo --json: online from $work (no checkout); every step held"
