# shellcheck shell=bash
# Helpers shared by tools/quickstart and tools/check. Source it from the repo root.

# Print a command the way `set -x` does (on stderr), then run it.
run() {
  local arg out=+
  for arg; do
    if [[ $arg =~ ^[[:alnum:]_./:=@%+,-]+$ ]]; then out+=" $arg"; else out+=" ${arg@Q}"; fi
  done
  printf '%s\n' "$out" >&2
  "$@"
}

# Print the packages of tools/packages.txt that are not installed (one dpkg-query call).
missing_packages() {
  local -a want
  local -A have=()
  local pkg status
  mapfile -t want < <(sed 's/#.*//; s/[[:space:]]//g; /^$/d' tools/packages.txt)
  # Unknown packages make dpkg-query complain and exit 1: they are simply missing.
  while read -r pkg status; do
    if [[ $status == *" installed" ]]; then have[$pkg]=1; fi
  done < <(dpkg-query -W -f='${Package} ${Status}\n' "${want[@]}" 2>/dev/null || true)
  for pkg in "${want[@]}"; do
    [[ -n ${have[$pkg]:-} ]] || echo "$pkg"
  done
}

# Install the missing packages as root; otherwise print the command to run and fail.
ensure_packages() {
  local -a missing
  mapfile -t missing < <(missing_packages)
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  if ((EUID != 0)); then
    echo "missing packages: ${missing[*]}" >&2
    echo "install them with:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    return 1
  fi
  run apt-get update -q &&
    DEBIAN_FRONTEND=noninteractive run apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# cmake_build DIR [CMAKE ARGS...]: configure DIR with Ninja (cheap when cached), then build.
cmake_build() {
  local dir=$1
  shift
  run cmake -S . -B "$dir" -G Ninja "$@" && run cmake --build "$dir"
}

# The main build tree, shared by quickstart and check so neither rebuilds the other's work.
build_main() { cmake_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTRATA_WERROR=ON; }
