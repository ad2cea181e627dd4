#!/usr/bin/env bash
# Print the path of the Python that runs neuroprune (3.12 first, then 3.13, then 3.11), or say
# how to get one (exit 1). PYTHON=/path/to/python overrides the choice.
# The simulators that need Python 3.10 (lava-nc, xylosim) get their own environment:
# `neuroprune backends install` (README, "Backend environments").
set -u
works() { "$1" -c 'import sys, venv; sys.exit(not (3, 11) <= sys.version_info[:2])' >/dev/null 2>&1; }
candidates=("${PYTHON:-}")
for v in 3.12 3.13 3.11; do
  candidates+=("python$v")
  if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root 2>/dev/null)
    for d in "$root"/versions/"$v"*/bin/python"$v"; do candidates+=("$d"); done
  fi
  candidates+=("$HOME"/.pyenv/versions/"$v"*/bin/python"$v" /usr/bin/python"$v" /usr/local/bin/python"$v")
done
candidates+=(python3)
for c in "${candidates[@]}"; do
  [ -n "$c" ] || continue
  p=$(command -v "$c" 2>/dev/null) || continue
  if works "$p"; then echo "$p"; exit 0; fi
done
echo "neuroprune needs Python 3.11, 3.12 or 3.13 and none was found." >&2
echo "Install one (e.g. 'pyenv install 3.12' or 'apt-get install python3.12 python3.12-venv')," >&2
echo "or point PYTHON at it: make demo PYTHON=/path/to/python3.12" >&2
exit 1
