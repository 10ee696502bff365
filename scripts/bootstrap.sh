#!/usr/bin/env bash
# Installs every build and test dependency of taskring. Idempotent: packages
# already present are not fetched again, so a second run costs one dpkg query.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libboost-dev            # Boost.Interprocess (header-only)
  libtbb-dev              # oneTBB
  libjemalloc-dev         # jemalloc
  libconcurrentqueue-dev  # moodycamel ConcurrentQueue
  libbenchmark-dev        # Google Benchmark
  libgtest-dev libgmock-dev googletest
  libcli11-dev            # argument parsing for the CLI
  nlohmann-json3-dev      # JSON for the CLI and the bench harness
  libcpp-httplib-dev      # HTTP for the metrics exporter
  python3                 # the demo formats its live progress with it
  python3-dev python3-venv python3-pip  # the Python package: pip install . into a venv
  clang libclang-rt-14-dev  # libFuzzer (clang 14's compiler-rt) for the log reader fuzz target
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "bootstrap: all ${#packages[@]} packages present"
  exit 0
fi

echo "bootstrap: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
