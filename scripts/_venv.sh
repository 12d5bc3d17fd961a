# Sourced by the scripts: make .venv (or .venv-$python) with djap and its dev extras.
djap_venv() {
  local python=${1:-python3}
  venv=.venv
  [ "$python" != python3 ] && venv=".venv-$python"
  if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating $venv with $python"
    "$python" -m venv "$venv"
  fi
  echo "==> installing djap with its dev extras into $venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 \
    | grep -v '^WARNING: Location' || true
}
