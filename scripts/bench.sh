#!/bin/bash
# bench.sh measures mound against the benchmark's floor server (see package
# bench): it builds ./cmd/mound and ./cmd/mound-bench into ./bin, starts mound
# on free loopback ports with a new data directory, runs mound-bench against
# it with this script's arguments (e.g. -quick, -json FILE), and stops the
# server and removes its data on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

"${GO:-go}" build -o bin/ ./cmd/mound ./cmd/mound-bench

work=$(mktemp -d)
mkdir "$work/data"
server=
cleanup() {
	if [ -n "$server" ]; then
		kill "$server" 2>/dev/null || true
		wait "$server" 2>/dev/null || true
	fi
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

status=0
bin/mound-bench -target "$addr" "$@" || status=$?
if [ "$status" -ne 0 ]; then
	echo "bench.sh: mound-bench failed; mound's log:" >&2
	tail -n 50 "$work/stderr" >&2
fi
exit "$status"
