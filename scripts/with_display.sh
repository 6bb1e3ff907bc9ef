#!/usr/bin/env bash
# Run a command with an X display: the current one if set, else a private Xvfb (Mesa gives
# napari's canvas its OpenGL context; QT_QPA_PLATFORM=offscreen alone does not).
set -euo pipefail

if [ -n "${DISPLAY:-}" ] || ! command -v Xvfb >/dev/null 2>&1; then
  exec "$@"
fi

for n in $(seq 90 140); do
  if [ ! -e "/tmp/.X11-unix/X$n" ] && [ ! -e "/tmp/.X$n-lock" ]; then
    display=":$n"
    break
  fi
done
: "${display:?no free X display number found}"

Xvfb "$display" -screen 0 1600x1200x24 -nolisten tcp +extension GLX +render -noreset >/tmp/xvfb-"${display#:}".log 2>&1 &
xvfb_pid=$!
trap 'kill "$xvfb_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  [ -e "/tmp/.X11-unix/X${display#:}" ] && break
  sleep 0.1
done
export DISPLAY="$display"
export LIBGL_ALWAYS_SOFTWARE=1
"$@"
