#!/usr/bin/env bash
# System packages napari and Qt need on a headless Debian/Ubuntu machine (Xvfb, Mesa OpenGL,
# the xcb libraries of Qt's X11 platform plugin). Installs only what is missing, and only
# when running as root with apt-get available; otherwise it says what to install and goes on.
set -euo pipefail

PACKAGES=(
  xvfb xauth
  libgl1 libgl1-mesa-dri libegl1 libglx-mesa0
  libxkbcommon-x11-0 libxkbcommon0
  libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0
  libxcb-xinerama0 libxcb-xinput0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libxcb-xkb1
  libfontconfig1 libdbus-1-3 libxrender1 libxi6
)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install_system_deps: not a Debian-like system; make sure Xvfb and OpenGL (Mesa) are installed" >&2
  exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_system_deps: missing system packages (install them as root): ${missing[*]}" >&2
  exit 0
fi

echo "install_system_deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# wait for another apt run (an unattended upgrade, a parallel job) instead of failing
APT=(apt-get -o DPkg::Lock::Timeout=300)
"${APT[@]}" update -qq
"${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
