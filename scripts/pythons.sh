#!/usr/bin/env bash
# Print one line per CPython >= 3.11 on this machine: "X.Y /path/to/python", newest last, one per X.Y.
# Looks on PATH (python3.N) and in the usual install places (pyenv, /usr/local, /usr, /opt).
set -u
declare -A seen
candidates=()
for n in 11 12 13 14 15 16; do
  p=$(command -v "python3.$n" 2>/dev/null) && candidates+=("$p")
  for d in "$HOME"/.pyenv/versions/3."$n".*/bin /usr/local/bin /usr/bin /opt/python*/bin /opt/python/3."$n"*/bin; do
    [ -x "$d/python3.$n" ] && candidates+=("$d/python3.$n")
  done
done
for p in "${candidates[@]}"; do
  # pyenv shims answer for versions that are not installed: ask the interpreter itself
  v=$("$p" -c 'import sys; i = sys.implementation; print(f"{sys.version_info[0]}.{sys.version_info[1]} {sys.executable}" if i.name == "cpython" and sys.version_info >= (3, 11) else "")' 2>/dev/null) || continue
  [ -n "$v" ] || continue
  xy=${v%% *}
  [ -n "${seen[$xy]:-}" ] && continue
  seen[$xy]=1
  echo "$v"
done | sort -V
