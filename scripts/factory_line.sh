#!/usr/bin/env bash
# A production line station: create the factory CA once, then provision a batch of units.
#
#   STATION=line-1 scripts/factory_line.sh COUNT [more `factory batch` flags, e.g. --registration]
#
# Environment:
#   STATION      this station's name, written into every record (required)
#   FACTORY_DIR  factory CA, serial registry, registration key (default: ./factory)
#   OUT_DIR      units, records.jsonl, cloud-import.json (default: ./out)
#   CA_NAME      name of a CA created on first run (default: "device-sim Factory")
#   PYTHON       interpreter (default: the repository's .venv, else python3)
#
# The CA is created only if FACTORY_DIR holds none (chain.pem missing). After that first run,
# move FACTORY_DIR/root offline: batches need only issuing/ and chain.pem.
# Exit status: 0 when every unit passed its self-test; 1 if any unit failed; 2 on a usage or
# configuration error (from `device-sim factory`); anything else from the shell.
set -euo pipefail

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: STATION=<name> $0 COUNT [factory batch flags...]" >&2
    exit 2
fi
count=$1
shift
if [[ -z ${STATION:-} ]]; then
    echo "factory_line: set STATION to this station's name" >&2
    exit 2
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
factory_dir=${FACTORY_DIR:-./factory}
out_dir=${OUT_DIR:-./out}
ca_name=${CA_NAME:-device-sim Factory}
if [[ -n ${PYTHON:-} ]]; then
    python=$PYTHON
elif [[ -x $repo/.venv/bin/python ]]; then
    python=$repo/.venv/bin/python
else
    python=python3
fi
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
factory=("$python" -m device_sim.apps.factory.cli)

if [[ ! -e $factory_dir/chain.pem ]]; then
    echo "factory_line: no CA in $factory_dir; creating one ($ca_name)" >&2
    "${factory[@]}" ca --factory-dir "$factory_dir" --name "$ca_name"
fi

exec "${factory[@]}" batch --factory-dir "$factory_dir" --out "$out_dir" --count "$count" \
    --station "$STATION" "$@"
