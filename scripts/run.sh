#!/usr/bin/env bash
# The main job: installs what is missing, then runs the whole system on this machine until Ctrl-C.
# Extra arguments go to `treasury-orch run` (e.g. --accounts 50 --rate 100).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/treasury-orch run "$@"
