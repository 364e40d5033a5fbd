#!/usr/bin/env bash
# The demo: the main job against a local lab fleet. It checks every input,
# starts the lab (real sshd hosts in namespaces on loopback addresses), reaches
# each host, breaks some on purpose, shows what that looks like from outside,
# repairs them and tears the lab down. (Drift checks, rebuilds, reseeds and
# drills join this walk as they land.)
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
step "every image, inventory and template checked; every host rendered" $fm validate --verbose
step "the standard images and their digests" $fm images list
expect 3 "what a web server adds to the base image (exit 3: they differ)" $fm images diff base web
step "kv-2's redis.conf, rendered with its peers" $fm images render kv --host kv-2 --file /etc/redis/redis.conf

trap '$fm lab down >/dev/null 2>&1 || true' EXIT
step "start the lab fleet of inventories/lab.yaml" $fm lab up
step "reach a host over SSH with strict host-key checking" $fm lab ssh kv-1 -- 'hostname; ps -o pid,comm -p 1; ls -ld /var/lib/redis'
labinv=$FLEETMEND_STATE_DIR/lab/inventory.yaml
expect 4 "drift check of the fresh lab: not converged yet, data volumes empty (exit 4)" $fm -i "$labinv" check
expect 4 "every item of one host" $fm -i "$labinv" check -v web-1
for h in blob-1 blob-2 blob-3; do
  step "write replicated blobs on $h" $fm lab ssh $h -- 'mkdir -p /srv/blobs/objects && for i in 1 2 3; do printf "blob %s\n" $i > /srv/blobs/objects/o$i; head -c 4096 /dev/zero >> /srv/blobs/objects/o$i; done; echo 1 > /srv/blobs/POSITION; cd /srv/blobs && sha256sum objects/* > /tmp/sums'
done
step "break a host: down" $fm lab break kv-2 --fault down
step "break a host: hung (TCP accepts, SSH never answers)" $fm lab break kv-3 --fault hang
step "break a host: silently corrupted data" $fm lab break blob-1 --fault corrupt-data --count 2
expect 4 "the lab from outside (exit 4: hosts not running)" $fm lab status
expect 4 "the check tells refused from hung, and the floors" $fm -i "$labinv" check --timeout 2 kv
step "when did kv-2 change?" $fm history kv-2
expect 1 "the corruption is silent: same sizes, other hashes" $fm lab ssh blob-1 -- 'cd /srv/blobs && ls -l objects && sha256sum -c /tmp/sums'
step "heal the faults" $fm lab heal-fault kv-2
step "heal the faults" $fm lab heal-fault kv-3
step "heal the faults" $fm lab heal-fault blob-1
expect 5 "plan for the whole lab: most hosts look failed, so the trip wire refuses (exit 5)" $fm -i "$labinv" plan
step "converge blob-1 to its image (its replica set keeps two healthy copies meanwhile)" $fm -i "$labinv" converge blob-1 --yes
step "blob-1 is now what its image says" $fm -i "$labinv" check blob-1
step "the run, step by step" sh -c "$fm runs | head -3"
step "a rebuilt host gets a fresh OS and a new host key" $fm lab reimage web-2
step "all running again" $fm lab status
step "tear down: no process or mount left" $fm lab down
trap - EXIT
printf '\n\033[1mdemo finished\033[0m\n'
