#!/usr/bin/env bash
# Lint, format check and type check, with the settings in pyproject.toml and the tools pinned in
# its test extras (scripts/setup.sh installs them into .venv).  Runs every check, even after one
# fails, so a single run lists everything; exits non-zero if any failed.  Changes no file.
set -uo pipefail
cd "$(dirname "$0")/.."

status=0
run() {
  echo "+ $*" >&2
  "$@" || status=1
}

for tool in ruff mypy; do
  if [ ! -x ".venv/bin/$tool" ]; then
    echo "lint: .venv/bin/$tool missing: run scripts/setup.sh" >&2
    exit 2
  fi
done

run .venv/bin/ruff check --output-format concise .
run .venv/bin/ruff format --check --output-format concise .
# mypy checks what [tool.mypy] names in `files`; without that setting, the whole package.
config_names_files=$(.venv/bin/python - <<'PY'
import tomllib
with open("pyproject.toml", "rb") as f:
    print("files" in tomllib.load(f).get("tool", {}).get("mypy", {}))
PY
)
if [ "$config_names_files" = True ]; then
  run .venv/bin/mypy
else
  run .venv/bin/mypy src/bridgefs
fi
exit $status
