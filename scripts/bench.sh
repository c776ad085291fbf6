#!/bin/bash
# bench.sh measures mound against the benchmark's floor server (see package
# bench): it builds ./cmd/mound, ./cmd/workerd and ./cmd/mound-bench into
# ./bin, starts mound on free loopback ports with a new data directory and,
# when the exec workload is selected (it is unless -only leaves it out), one
# bin/workerd --jobs 2 connected to it, runs mound-bench against it with this
# script's arguments (e.g. -quick, -json FILE, -only exec) and -disk-dir in
# the data directory's file system, and stops the worker and the server and
# removes their data on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

"${GO:-go}" build -o bin/ ./cmd/mound ./cmd/workerd ./cmd/mound-bench

# exec_selected: whether mound-bench's arguments select the exec workload.
exec_selected() {
	local only=
	while [ $# -gt 0 ]; do
		case "$1" in
		-only=* | --only=*) only=${1#*=} ;;
		-only | --only) only=${2:-} && shift ;;
		esac
		shift
	done
	[ -z "$only" ] || [[ ",$only," == *,exec,* ]]
}

work=$(mktemp -d)
mkdir "$work/data"
server=
worker=
cleanup() {
	# The worker first: it would otherwise log its reconnection attempts.
	for pid in $worker $server; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bin/mound --listen 127.0.0.1:0 --http 127.0.0.1:0 --data "$work/data" \
	>"$work/stdout" 2>"$work/stderr" &
server=$!

# The server prints "mound: serving REAPI on grpc://HOST:PORT ..." once it
# listens; the port is only known from that line.
addr=
for _ in $(seq 300); do
	addr=$(sed -n 's|.*grpc://\([^ ]*\).*|\1|p' "$work/stdout" | head -n 1)
	[ -n "$addr" ] && break
	if ! kill -0 "$server" 2>/dev/null; then
		echo "bench.sh: mound exited before serving:" >&2
		cat "$work/stdout" "$work/stderr" >&2
		exit 1
	fi
	sleep 0.1
done
if [ -z "$addr" ]; then
	echo "bench.sh: mound printed no grpc:// address within 30s:" >&2
	cat "$work/stdout" "$work/stderr" >&2
	exit 1
fi

if exec_selected "$@"; then
	bin/workerd --server "$addr" --jobs 2 --dir "$work/worker" --name bench-worker \
		>"$work/worker.log" 2>&1 &
	worker=$!
	# The worker announces itself to the server: wait until the server
	# lists it, so that the first execution finds it.
	for _ in $(seq 300); do
		bin/mound admin --server "$addr" workers 2>/dev/null | grep -q '^bench-worker ' && break
		if ! kill -0 "$worker" 2>/dev/null; then
			echo "bench.sh: workerd exited before connecting:" >&2
			cat "$work/worker.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	if ! bin/mound admin --server "$addr" workers 2>/dev/null | grep -q '^bench-worker '; then
		echo "bench.sh: mound lists no worker bench-worker after 30s:" >&2
		cat "$work/worker.log" >&2
		exit 1
	fi
fi

status=0
# The disk is measured in the data directory's file system: a durable
# upload cannot be faster than it.
bin/mound-bench -target "$addr" -disk-dir "$work" "$@" || status=$?
if [ "$status" -ne 0 ]; then
	echo "bench.sh: mound-bench failed; mound's log:" >&2
	tail -n 50 "$work/stderr" >&2
	if [ -n "$worker" ]; then
		echo "bench.sh: workerd's log:" >&2
		tail -n 50 "$work/worker.log" >&2
	fi
fi
exit "$status"
