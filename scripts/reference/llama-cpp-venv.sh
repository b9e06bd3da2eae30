#!/usr/bin/env bash
# The throwaway virtual environment with llama-cpp-python (llama.cpp built
# from source for this CPU) that the reference scripts run in: the speed
# comparison (llama_cpp_speed.py) and the fixture (llama_cpp_reference.py).
# Not part of the build or the tests. About 15 minutes on 2 cores.
#
#   scripts/reference/llama-cpp-venv.sh [DIR]     # default target/llama-cpp-venv
#   target/llama-cpp-venv/bin/python scripts/reference/llama_cpp_speed.py MODEL.gguf 2
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${1:-target/llama-cpp-venv}
PYTHON=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    llama-cpp-python==0.3.36 jinja2==3.1.6 numpy==2.3.5
fi
"$venv/bin/python" -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__)"
