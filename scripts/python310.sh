#!/usr/bin/env bash
# Print the path of a working Python 3.10 interpreter, or explain how to get one (exit 1).
# lava-nc 0.10.0 imports only on Python 3.10, so neuroprune needs exactly 3.10.
set -u
works() { "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }
candidates=("${PYTHON310:-}" python3.10)
if command -v pyenv >/dev/null 2>&1; then
  root=$(pyenv root 2>/dev/null)
  for d in "$root"/versions/3.10*/bin/python3.10; do candidates+=("$d"); done
fi
candidates+=(/usr/bin/python3.10 /usr/local/bin/python3.10 "$HOME"/.pyenv/versions/3.10*/bin/python3.10 python3)
for c in "${candidates[@]}"; do
  [ -n "$c" ] || continue
  p=$(command -v "$c" 2>/dev/null) || continue
  if works "$p"; then echo "$p"; exit 0; fi
done
echo "neuroprune needs Python 3.10 (lava-nc 0.10.0 imports only on 3.10) and none was found." >&2
echo "Install it (e.g. 'pyenv install 3.10' or 'apt-get install python3.10 python3.10-venv')," >&2
echo "or point PYTHON310 at it: make demo PYTHON310=/path/to/python3.10" >&2
exit 1
