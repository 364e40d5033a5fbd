#!/usr/bin/env bash
# The demo: the main job against a local lab fleet. It starts the lab (real sshd
# hosts in namespaces on loopback addresses), heals the fresh fleet to its
# images, then runs a disaster-recovery drill: one host loses its disk while
# another's data is silently corrupted; heal brings both back, and the drill
# proves how fast and that nothing was lost. Then a short tour, and the lab is
# torn down.
set -euo pipefail
cd "$(dirname "$0")/.."
fm=.venv/bin/fleetmend
export FLEETMEND_STATE_DIR=${FLEETMEND_STATE_DIR:-.fleetmend/demo}

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }
# expect CODE TITLE CMD...: run a step whose documented exit code is CODE
expect() {
  local want=$1; shift
  set +e; step "$@"; local rc=$?; set -e
  [ "$rc" -eq "$want" ] || { echo "unexpected exit code $rc (wanted $want)" >&2; exit 1; }
}

step "fleetmend version" $fm --version
step "every image, inventory and template checked; every host rendered" $fm validate

trap '$fm lab down >/dev/null 2>&1 || true' EXIT
step "start the lab fleet of inventories/lab.yaml (three sites)" $fm lab up
labinv=$FLEETMEND_STATE_DIR/lab/inventory.yaml
fm_lab() { $fm -i "$labinv" "$@"; }
for h in web-1 web-2; do
  step "the content web servers replicate, on $h" $fm lab ssh $h -- \
    'mkdir -p /srv/www && printf "<h1>hello from the lab</h1>\n" > /srv/www/index.html && yes fleetmend | head -c 65536 > /srv/www/logo.bin && echo 1 > /srv/www/.generation'
done
for h in blob-1 blob-2 blob-3; do
  step "replicated blobs on $h" $fm lab ssh $h -- \
    'mkdir -p /srv/blobs/objects && for i in 1 2 3 4; do printf "blob %s\n" $i > /srv/blobs/objects/o$i; head -c 8192 /dev/zero >> /srv/blobs/objects/o$i; done; echo 1 > /srv/blobs/POSITION'
done
expect 3 "the fresh lab against its images (exit 3: drifted, not converged yet)" fm_lab check web blobs
step "what heal would do: the cheapest rung per host, under the safety rules" fm_lab heal web blobs --dry-run
step "heal the fleet to its images (journaled, locked, one copy per replica set at a time)" fm_lab heal web blobs --yes
step "a drill: web-1 loses its disk while blob-2's data silently rots; heal, measure" \
  fm_lab drill drills/demo.yaml --yes
step "past drills (fleetmend drill report ID re-renders one)" fm_lab drill list

printf '\n\033[1m== a short tour\033[0m\n'
expect 3 "what a web server adds to the base image (exit 3: they differ)" $fm images diff base web
step "kv-2's redis.conf, rendered with its peers" $fm images render kv --host kv-2 --file /etc/redis/redis.conf
for h in web-1 web-2 blob-1; do $fm lab break $h --fault down >/dev/null; done
expect 5 "three of five hosts down: the trip wire stops heal, it is more likely the network (exit 5)" \
  fm_lab heal web blobs --dry-run --timeout 2
for h in web-1 web-2 blob-1; do $fm lab heal-fault $h >/dev/null; done
step "every repair, in the journal" sh -c "$fm runs | head -6"
step "the audit chain is intact" $fm audit verify
step "tear down: no process or mount left" $fm lab down
trap - EXIT
printf '\n\033[1mdemo finished\033[0m: the drill report is the report.html path printed above\n'
