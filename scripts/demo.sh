#!/usr/bin/env bash
# The demo: the best end-to-end walk the project can do today. It validates every
# example image and inventory, renders every image for every example host, and
# shows the commands an SRE uses first. (The lab fleet and drills will extend it.)
set -euo pipefail
cd "$(dirname "$0")/.."
fm=.venv/bin/fleetmend

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }

step "fleetmend version" $fm --version
step "every image, inventory and template checked; every host rendered" $fm validate --verbose
step "the standard images and their digests" $fm images list
step "one image resolved along extends" $fm images show web
step "the lab inventory as fleetmend reads it" $fm inventory show
step "a production-shaped inventory (never contacted)" $fm -i inventories/example-prod.yaml inventory show
step "kv-2's redis.conf, rendered with its peers" $fm images render kv --host kv-2 --file /etc/redis/redis.conf
# diff exits 3 when the images differ, as documented; that is the expected outcome here
set +e
step "what a web server adds to the base image" $fm images diff base web
rc=$?
set -e
[ "$rc" -eq 3 ] || { echo "unexpected exit code $rc from images diff" >&2; exit 1; }
printf '\n\033[1mdemo finished\033[0m: all example inputs are valid and render for every host.\n'
