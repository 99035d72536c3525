#!/usr/bin/env bash
# Installs the peers the load benchmark compares Sidegate with, each in its own venv under
# bench/.peers/ (gitignored), so their dependencies never touch the project's venv.
# Also py-spy, for `python -m bench.harness.profile`. Versions are pinned so runs stay comparable;
# override with LITELLM_SPEC / PYSPY_SPEC.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
LITELLM_SPEC=${LITELLM_SPEC:-litellm[proxy]==1.106.2}
PYSPY_SPEC=${PYSPY_SPEC:-py-spy==0.4.3}
venv=.peers/litellm-venv
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
if ! "$venv/bin/python" -m pip show litellm >/dev/null 2>&1 \
   || [ "litellm[proxy]==$("$venv/bin/python" -m pip show litellm | awk '/^Version:/{print $2}')" != "$LITELLM_SPEC" ]; then
  echo "bench: installing $LITELLM_SPEC into bench/$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet "$LITELLM_SPEC"
fi
echo "bench: LiteLLM $("$venv/bin/python" -m pip show litellm | awk '/^Version:/{print $2}') ready"
tools=.peers/tools-venv
[ -x "$tools/bin/python" ] || "$PYTHON" -m venv "$tools"
"$tools/bin/python" -m pip install --quiet "$PYSPY_SPEC"
