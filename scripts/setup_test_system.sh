#!/usr/bin/env bash
# System packages and services the tests need. Safe to run repeatedly.
# The parallel-training issue adds the OpenSSH server set-up here.
set -euo pipefail
exit 0
