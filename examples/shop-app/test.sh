#!/bin/sh
# The shop's tests, run by its build script before anything is published: a failing test fails
# the BuildJob (reason ScriptFailed, with this output in its log tail) and makes no Release.
set -e
grep -q '<h1>' www/index.html || { echo "www/index.html has no heading"; exit 1; }
echo "tests passed"
