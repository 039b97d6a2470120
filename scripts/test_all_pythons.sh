#!/usr/bin/env bash
# `make test`: run the suite on every CPython >= 3.11 this machine has (scripts/pythons.sh), each
# in its own virtual environment (.venv for the Python that `make` uses, .venv-X.Y for the others),
# then say which interpreters ran and how each ended. Arguments go to pytest.
# pytest's exit code 5 (no tests collected) is a failure: an empty suite must never pass.
set -uo pipefail
cd "$(dirname "$0")/.."
main_venv=${VENV:-.venv}
main_xy=$("$main_venv/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
summary=()
status=0
ran=0
while read -r xy exe; do
  if [ "$xy" = "$main_xy" ]; then
    venv=$main_venv
  else
    venv=.venv-$xy
    if [ ! -f "$venv/.installed" ] || [ pyproject.toml -nt "$venv/.installed" ]; then
      echo "== setting up $venv ($exe)"
      "$exe" -m venv "$venv" && "$venv/bin/python" -m pip install --quiet --upgrade pip \
        && "$venv/bin/python" -m pip install --quiet -e ".[test,bench,bridge]" && touch "$venv/.installed" || {
          summary+=("$xy: set-up FAILED"); status=1; continue; }
    fi
  fi
  version=$("$venv/bin/python" -c 'import platform; print(platform.python_version())')
  echo "== Python $version ($venv)"
  # The soak test runs 3 minutes on the first interpreter (issue 10's CI figure) and 1 minute on
  # the others; CHRONICLE_SOAK_SECONDS set by the caller wins.
  if [ "$ran" -eq 0 ]; then soak=${CHRONICLE_SOAK_SECONDS:-180}; else soak=${CHRONICLE_SOAK_SECONDS:-60}; fi
  CHRONICLE_SOAK_SECONDS=$soak "$venv/bin/python" -m pytest -q "$@" < /dev/null
  rc=$?
  ran=$((ran + 1))
  case $rc in
    0) summary+=("Python $version: passed") ;;
    5) summary+=("Python $version: pytest collected no tests (exit 5): the suite is missing"); status=1 ;;
    *) summary+=("Python $version: FAILED (pytest exit $rc)"); status=1 ;;
  esac
done < <(echo "$main_xy $main_venv/bin/python"; scripts/pythons.sh | grep -v "^$main_xy ")
echo
echo "== the suite ran on $ran interpreter(s):"
printf '   %s\n' "${summary[@]}"
exit $status
