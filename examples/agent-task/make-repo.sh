#!/bin/sh
# Make the demo repository the example's task works on: a bare repository with the
# branch agent/notes holding agent.sh. Run inside the container (as root):
#   sh /srv/examples/agent-task/make-repo.sh /srv/agent-demo.git
set -eu
dest="${1:-/srv/agent-demo.git}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
G="git -c user.name=demo -c user.email=demo@example.invalid -c init.defaultBranch=main"
$G init -q "$work"
cp "$here/agent.sh" "$work/agent.sh"
printf '# Agent demo\n' > "$work/README.md"
$G -C "$work" add .
$G -C "$work" commit -q -m "demo project"
$G -C "$work" branch agent/notes
$G clone -q --bare "$work" "$dest"
rm -rf "$work"
echo "made $dest (branches: main, agent/notes)"
