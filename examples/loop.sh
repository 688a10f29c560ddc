#!/usr/bin/env bash
# The whole loop on the example site, on this machine: the site as a git
# repository, a plan (what CI shows on a pull request), its apply (what CI
# does on merge), the site server reconciling the manifests, both
# distribution points served over HTTP, and three agents — a pre-production
# client, a workstation and a server — that fetch their policy, download
# and verify their content, scan with the shipped catalogs and report.
# It ends with the status tables.
#
# Everything lives under target/loop/ (made afresh each run) and listens on
# 127.0.0.1 only: the server on $PATCHOPS_DEMO_PORT (18400), the DPs on the
# two ports after it. Needs git and the release binary (built first).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
umask 022

bin=$root/target/release/patchops
if [ ! -x "$bin" ]; then
  echo "build first: cargo build --release" >&2
  exit 1
fi
port=${PATCHOPS_DEMO_PORT:-18400}
server_port=$port dp_hq_port=$((port + 1)) dp_branch_port=$((port + 2))
for p in "$server_port" "$dp_hq_port" "$dp_branch_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p on 127.0.0.1 is in use; choose free ones with PATCHOPS_DEMO_PORT=N (N, N+1, N+2)" >&2
    exit 1
  fi
done

work=$root/target/loop
rm -rf "$work"
mkdir -p "$work/agents"
cd "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# Secrets come by reference (env:NAME), never on a command line.
export PATCHOPS_ENROLL="demo-enrollment-$RANDOM$RANDOM"
export PATCHOPS_ADMIN="demo-admin-$RANDOM$RANDOM"
state=sqlite://$work/site.db

step "The site repository (examples/site; its DPs on loopback for this demo)"
cp -R "$root/examples/site" site
sed -i \
  -e "s#http://dp-hq.corp.example:8080#http://127.0.0.1:$dp_hq_port#" \
  -e "s#http://dp-branch.corp.example:8080#http://127.0.0.1:$dp_branch_port#" \
  site/distribution-points.yaml
# The hash cache patchops keeps beside the manifests is not part of the site.
printf '.patchops/\n' > site/.gitignore
git -C site init -q -b main
git -C site add -A
git -C site -c user.name=demo -c user.email=demo@example.invalid commit -q -m "The LAB site"
git -C site log --oneline

step "Inventory: the 302 machines of examples/inventory.csv"
run "$bin" inventory import "$root/examples/inventory.csv" --state "$state"

step "Pull request: CI validates and plans (the blast radius ends the plan)"
run "$bin" validate site --strict
run "$bin" plan site --state "$state" --out plan.json --color never

step "Merge: CI applies exactly the reviewed plan"
run "$bin" apply plan.json --state "$state" --color never

step "The site server (reconciling site/ continuously) and the two DPs"
"$bin" server --state "$state" --listen "127.0.0.1:$server_port" \
  --enroll-secret-from env:PATCHOPS_ENROLL --admin-token-from env:PATCHOPS_ADMIN \
  --manifests site --interval 30s >server.out 2>server.log &
pids+=($!)
"$bin" dp serve --dp dp-hq --listen "127.0.0.1:$dp_hq_port" --state "$state" >dp-hq.log 2>&1 &
pids+=($!)
"$bin" dp serve --dp dp-branch --listen "127.0.0.1:$dp_branch_port" --state "$state" >dp-branch.log 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  grep -q "listening on" server.out 2>/dev/null && break
  sleep 0.1
done
grep "listening on" server.out || { cat server.log >&2; exit 1; }

step "Three agents, one cycle each: register, inventory, policy, download, verify, scan, report"
agent_pids=()
for machine in wks-test-01 wks-hq-001 srv-hq-02; do
  "$bin" agent --server "http://127.0.0.1:$server_port" --enroll-secret-from env:PATCHOPS_ENROLL \
    --state-dir "agents/$machine" --facts "$root/examples/agents/$machine.yaml" \
    --scan-facts "$root/examples/agents/$machine.scan.yaml" --once \
    >"agents/$machine.out" 2>"agents/$machine.log" &
  agent_pids+=($!)
done
for pid in "${agent_pids[@]}"; do wait "$pid"; done
for machine in wks-test-01 wks-hq-001 srv-hq-02; do
  echo "--- $machine"
  cat "agents/$machine.out"
done

step "Status: advertisements"
run "$bin" status advertisements --state "$state" --color never
step "Status: compliance (patch states the agents reported)"
run "$bin" status updates --state "$state" --color never
step "Status: the site and its reconcile"
run "$bin" status site --state "$state" --color never
echo
echo "Everything is in $work (server.log, agents/*.log); the processes stop now."
