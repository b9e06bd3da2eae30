#!/usr/bin/env bash
# Installs the command-line tools the tests call, from Debian's packages:
# `promtool` checks the /metrics exposition and the rules, `prometheus`
# scrapes a gateway in an integration test (both: package `prometheus`).
# Does nothing when they are there already.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    echo "tools: promtool present ($(promtool --version 2>&1 | head -1))"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "tools: promtool/prometheus are missing and there is no apt-get; install Prometheus by hand" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "tools: installing promtool and prometheus (Debian package prometheus)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
echo "tools: $(promtool --version 2>&1 | head -1)"
