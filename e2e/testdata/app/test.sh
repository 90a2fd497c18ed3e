#!/bin/sh
# The test app's tests, run by its build script: the page it serves must be there and say hello.
set -eu
grep -q 'hello from the ferry e2e app' www/index.html
echo "test.sh: www/index.html says hello; tests passed"
