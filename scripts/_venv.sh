# Sourced by the scripts: make .venv (or .venv-$python) with djap and its dev extras.

# Print the path of a working interpreter for $1 (python3.12, or a path). A pyenv
# shim exists for every installed version but fails unless that version is selected,
# so a name that does not run is looked up among pyenv's versions (newest first).
djap_python() {
  local want=$1 found=""
  if [[ "$want" == */* ]]; then
    [ -x "$want" ] && found=$want
  elif "$want" -c 'import sys' >/dev/null 2>&1; then
    found=$(command -v "$want")
  else
    local root=${PYENV_ROOT:-$HOME/.pyenv}
    found=$(ls -d "$root"/versions/*/bin/"$want" 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  if [ -z "$found" ] || ! "$found" -c 'import sys' >/dev/null 2>&1; then
    echo "error: no working interpreter '$want'; install it or pass --python /path/to/it" >&2
    return 1
  fi
  echo "$found"
}

djap_venv() {
  local python=${1:-python3} interpreter
  venv=.venv
  [ "$python" != python3 ] && venv=".venv-$(basename "$python")"
  if [ ! -x "$venv/bin/python" ]; then
    interpreter=$(djap_python "$python")
    echo "==> creating $venv with $interpreter"
    "$interpreter" -m venv "$venv"
  fi
  echo "==> installing djap with its dev extras into $venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 \
    | grep -v '^WARNING: Location' || true
}
