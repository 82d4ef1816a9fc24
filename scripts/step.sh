# Sourced by the test scripts: `step "what"` prints a heading with how far
# into the whole run the step starts. The suite must stay well inside CI's
# limit, and a CI log should show where the time goes; a sub-suite started
# by scripts/test.sh inherits the run's start, one started alone starts its own.
export AGENTGUARD_TEST_START="${AGENTGUARD_TEST_START:-$(date +%s)}"
step() { printf '\n==> %s  [%ss]\n' "$*" "$(($(date +%s) - AGENTGUARD_TEST_START))"; }
