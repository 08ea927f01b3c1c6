#!/bin/sh
# A stand-in for a coding agent's CLI (claude -p, codex exec, aider --yes...): it reads its
# task, changes files on its branch and commits, as a real agent does through its own tools.
# It runs as the project's user, in its own checkout of its branch (a maestro-runtime
# workspace), with only the hosts of its allow_hosts reachable.
set -eu
: "${AGENT_TOKEN:?AGENT_TOKEN is not set (give it in env:, never in cmd:)}"
task="${1:-write the project notes}"
echo "agent: on branch $(git rev-parse --abbrev-ref HEAD), task: $task"
echo "agent: API token received (${#AGENT_TOKEN} characters; never printed)"
G="git -c user.name=${AGENT_NAME:-agent} -c user.email=agent@example.invalid"

printf '# Notes\n\nTask: %s\n' "$task" > NOTES.md
$G add NOTES.md
$G commit -q -m "agent: start notes"
echo "agent: step 1 committed"
sleep "${AGENT_STEP_SECONDS:-2}"

printf '\nDone.\n' >> NOTES.md
$G commit -q -am "agent: finish notes"
echo "agent: step 2 committed, $(git rev-list --count '@{upstream}..HEAD') commit(s) ahead of upstream"
