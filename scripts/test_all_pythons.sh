#!/usr/bin/env bash
# Run the test suite under every Python the package declares (3.10 to 3.13)
# that this machine has, each in its own virtual environment (.venv-3.X)
# with the newest numpy, scipy and ASE that pip installs for it.
#
#   bash scripts/test_all_pythons.sh            # every interpreter found
#   bash scripts/test_all_pythons.sh 3.13       # only the ones named
#
# Interpreters are looked up as pythonX.Y on PATH and under
# ~/.pyenv/versions/X.Y*/bin. CI keeps its one command (make test); this is
# for checking a release or a dependency upgrade.
set -uo pipefail
cd "$(dirname "$0")/.."
versions=("$@")
[ ${#versions[@]} -eq 0 ] && versions=(3.10 3.11 3.12 3.13)

find_python() {
    local version=$1 candidate
    candidate=$(command -v "python$version" 2>/dev/null) && { echo "$candidate"; return; }
    for candidate in "$HOME"/.pyenv/versions/"$version"*/bin/python"$version"; do
        [ -x "$candidate" ] && { echo "$candidate"; return; }
    done
    return 1
}

bash scripts/setup_test_system.sh || exit 1
summary=()
status=0
for version in "${versions[@]}"; do
    python=$(find_python "$version") || { summary+=("$version: not on this machine"); continue; }
    venv=".venv-$version"
    echo "== Python $version ($python) in $venv"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv" || { summary+=("$version: venv failed"); status=1; continue; }
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet --upgrade -e '.[test]' || { summary+=("$version: install failed"); status=1; continue; }
    "$venv/bin/python" -m pytest -q -p no:cacheprovider tests
    rc=$?
    [ $rc -eq 5 ] && rc=0   # no tests collected is not a failure
    numpy=$("$venv/bin/python" -c 'import numpy, ase; print("numpy", numpy.__version__, "ase", ase.__version__)')
    summary+=("$version: pytest exit $rc ($numpy)")
    [ $rc -ne 0 ] && status=1
done
printf '%s\n' "${summary[@]}"
exit $status
