#!/usr/bin/env bash
# Fetch, here, the wheels scripts/gpu-check.sh needs on the GPU image (Python 3.12, x86-64), which has
# PyTorch, Lightning and JAX but no Keras: Keras (the version installed here) and the two of its
# requirements that image lacks (namex, optree); and plotly, whose plotly.js the study's report.html
# embeds (read from its files, so none of its requirements is needed). They land in .whl/ (ignored by
# git) and travel with the check (the device tool's carry: [".whl"]). About 13 MB.
set -eu
cd "$(dirname "$0")/.."
version() { python3 -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
KERAS="$(version keras)"
PLOTLY="$(version plotly)"
mkdir -p .whl
for package in "keras==$KERAS" namex optree "plotly==$PLOTLY"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "$package"
done
ls -la .whl
