#!/bin/bash
# bench-bazel.sh measures what mound's remote execution gives a real build:
# Debian's Bazel 4 builds a generated C workspace (LIBS cc_library targets in
# a dependency DAG, each one .c and one .h, and BINS cc_binary targets on top
# of them; each compile, archive and link is an action) three times:
#
#   local        bazel build on this machine: a fresh output user root (empty
#                caches; no disk cache), actions in Bazel's linux-sandbox
#   remote cold  --remote_executor against a new mound (fresh data directory)
#                with one local bin/workerd --jobs 2, a fresh output user root
#   remote warm  the same after `bazel clean`: every action is in mound's
#                action cache
#
# Each Bazel server is started untimed (bazel info) so that the times are of
# `bazel build //...` alone: loading, analysis and execution. The script
# prints each build's wall time and Bazel's process summary, and the ratios
# judged by the aims: remote cold / local within 1.3x, local / remote warm at
# least 3x. It shuts every Bazel server down and stops mound and the worker
# on exit.
#
#   scripts/bench-bazel.sh              # LIBS=200 FUNCS=20 BINS=10 REMOTE_JOBS=8
#
# Works offline: rules_cc and rules_java come from e2e/testdata/stubs.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

LIBS=${LIBS:-200}            # cc_library targets
FUNCS=${FUNCS:-20}           # functions in each library's .c
BINS=${BINS:-10}             # cc_binary targets
# Actions Bazel keeps in flight with remote execution: more than the
# worker's two slots, so that uploads and downloads overlap execution.
REMOTE_JOBS=${REMOTE_JOBS:-8}

"${GO:-go}" build -o bin/ ./cmd/mound ./cmd/workerd

work=$(mktemp -d /tmp/mound-bench-bazel-XXXXXX)
server=
worker=
roots=()
cleanup() {
	for root in "${roots[@]}"; do
		bazel --output_user_root="$root" --nohome_rc shutdown >/dev/null 2>&1 || true
	done
	for pid in $worker $server; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	# Bazel leaves read-only directories behind.
	chmod -R u+w "$work" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the workspace ---------------------------------------------------------
ws=$work/ws
mkdir -p "$ws"
cat >"$ws/WORKSPACE" <<'EOF'
workspace(name = "mound_bench")
EOF
cat >"$ws/.bazelrc" <<EOF
build --override_repository=rules_cc=$repo/e2e/testdata/stubs/rules_cc
build --override_repository=rules_java=$repo/e2e/testdata/stubs/rules_java
# Debian's /etc/bazel/bazelrc turns on --sandbox_debug, which makes
# linux-sandbox log into every action's stderr.
build --nosandbox_debug
build --incompatible_strict_action_env
# Cold means cold: no local disk cache.
build --disk_cache=
build --color=no --curses=no --noshow_progress
# No convenience symlinks: one build's bazel-* links would otherwise be
# packages of the next build's //..., as each run has its own output base.
build --symlink_prefix=/
EOF

# Library i includes and calls library i-1 and library i/2: a DAG whose
# compiles can all run at once (they need only headers) and whose archives
# the binaries link.
lib() { printf 'l%03d' "$1"; }
for ((i = 0; i < LIBS; i++)); do
	n=$(lib "$i")
	mkdir -p "$ws/$n"
	deps=()
	if ((i > 0)); then
		deps+=("$(lib $((i - 1)))")
		((i / 2 != i - 1)) && deps+=("$(lib $((i / 2)))")
	fi
	{
		echo "#ifndef ${n^^}_H"
		echo "#define ${n^^}_H"
		echo "int $n(int x);"
		echo "#endif"
	} >"$ws/$n/$n.h"
	{
		echo "#include \"$n/$n.h\""
		for d in "${deps[@]}"; do echo "#include \"$d/$d.h\""; done
		for ((f = 0; f < FUNCS; f++)); do
			echo "static int f$f(int x) {"
			echo "  int s = x + $f;"
			echo "  for (int k = 0; k < $((f + 3)); k++) { s = s * 31 + (k ^ (s >> 3)); if (s % 7 == $((f % 7))) s -= $i; }"
			echo "  return s;"
			echo "}"
		done
		echo "int $n(int x) {"
		echo "  int s = 0;"
		for d in "${deps[@]}"; do echo "  s += $d(x);"; done
		for ((f = 0; f < FUNCS; f++)); do echo "  s ^= f$f(x + s);"; done
		echo "  return s;"
		echo "}"
	} >"$ws/$n/$n.c"
	{
		echo 'load("@rules_cc//cc:defs.bzl", "cc_library")'
		echo "cc_library("
		echo "    name = \"$n\","
		echo "    srcs = [\"$n.c\"],"
		echo "    hdrs = [\"$n.h\"],"
		printf '    deps = ['
		for d in "${deps[@]}"; do printf '"//%s", ' "$d"; done
		echo '],'
		echo '    visibility = ["//visibility:public"],'
		echo ")"
	} >"$ws/$n/BUILD"
done
for ((j = 0; j < BINS; j++)); do
	b=$(printf 'b%02d' "$j")
	top=$(lib $(((j + 1) * LIBS / BINS - 1)))
	mkdir -p "$ws/$b"
	cat >"$ws/$b/main.c" <<EOF
#include <stdio.h>
#include "$top/$top.h"
int main(void) { printf("%d\\n", $top(42)); return 0; }
EOF
	cat >"$ws/$b/BUILD" <<EOF
load("@rules_cc//cc:defs.bzl", "cc_binary")
cc_binary(name = "$b", srcs = ["main.c"], deps = ["//$top"])
EOF
done

# --- mound and its worker --------------------------------------------------
start_mound() {
	rm -rf "$work/data" "$work/worker"
	bin/mound --listen 127.0.0.1:0 --http "" --data "$work/data" >"$work/mound.out" 2>"$work/mound.log" &
	server=$!
	addr=
	for _ in $(seq 300); do
		addr=$(sed -n 's|.*serving REAPI on grpc://\([^ ]*\).*|\1|p' "$work/mound.out" | head -n 1)
		[ -n "$addr" ] && break
		kill -0 "$server" 2>/dev/null || { cat "$work/mound.out" "$work/mound.log" >&2; exit 1; }
		sleep 0.1
	done
	[ -n "$addr" ] || { echo "bench-bazel.sh: mound printed no address" >&2; exit 1; }
	bin/workerd --server "$addr" --jobs 2 --dir "$work/worker" --name bench-bazel-worker >"$work/worker.log" 2>&1 &
	worker=$!
	for _ in $(seq 300); do
		bin/mound admin --server "$addr" workers 2>/dev/null | grep -q '^bench-bazel-worker ' && return
		kill -0 "$worker" 2>/dev/null || { cat "$work/worker.log" >&2; exit 1; }
		sleep 0.1
	done
	echo "bench-bazel.sh: the worker did not connect:" >&2
	cat "$work/worker.log" >&2
	exit 1
}

# --- Bazel -----------------------------------------------------------------
# bzl ROOT ARGS...: one Bazel command in the workspace with its own output
# user root, which also holds its log.
bzl() {
	local root=$1
	shift
	(cd "$ws" && bazel --output_user_root="$root" --nohome_rc --max_idle_secs=900 "$@")
}

# timed_build NAME ROOT ARGS...: starts ROOT's server untimed, then times
# `bazel build //...`; sets seconds and summary.
timed_build() {
	local name=$1 root=$2
	shift 2
	bzl "$root" info >/dev/null 2>&1
	echo "bench-bazel.sh: $name build" >&2
	local t0 t1
	t0=$(date +%s.%N)
	if ! bzl "$root" build //... "$@" >"$work/$name.log" 2>&1; then
		echo "bench-bazel.sh: the $name build failed:" >&2
		tail -n 40 "$work/$name.log" >&2
		[ -n "$server" ] && tail -n 20 "$work/mound.log" "$work/worker.log" >&2
		exit 1
	fi
	t1=$(date +%s.%N)
	seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	summary=$(grep -o 'INFO: [0-9]* processes:.*' "$work/$name.log" | tail -n 1 | sed 's/^INFO: //')
}

# actions SUMMARY: the processes that were not Bazel-internal.
actions() {
	echo "$1" | awk '{ n = $1; for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^internal/) n -= $i; print n }'
}

echo "bench-bazel.sh: workspace of $LIBS libraries ($FUNCS functions each) and $BINS binaries in $ws" >&2

roots+=("$work/bazel-local")
release=$(dpkg-query -W -f='${Version}' bazel-bootstrap 2>/dev/null || bazel --version)
timed_build local "$work/bazel-local"
local_s=$seconds local_sum=$summary
bzl "$work/bazel-local" shutdown >/dev/null 2>&1

start_mound
remote=(--remote_executor="grpc://$addr" --remote_timeout=60 --remote_retries=0 --noremote_local_fallback --jobs="$REMOTE_JOBS")
roots+=("$work/bazel-remote")
timed_build remote-cold "$work/bazel-remote" "${remote[@]}"
cold_s=$seconds cold_sum=$summary
bzl "$work/bazel-remote" clean >/dev/null 2>&1
timed_build remote-warm "$work/bazel-remote" "${remote[@]}"
warm_s=$seconds warm_sum=$summary
bzl "$work/bazel-remote" shutdown >/dev/null 2>&1

for s in "$cold_sum" "$warm_sum"; do
	if echo "$s" | grep -Eq 'linux-sandbox|local|worker'; then
		echo "bench-bazel.sh: warning: a remote build ran actions on this machine: $s" >&2
	fi
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() { awk -v v="$1" -v aim="$2" -v op="$3" 'BEGIN { ok = (op == "<=") ? v <= aim : v >= aim; print ok ? "PASS" : "MISS" }'; }
cold_ratio=$(ratio "$cold_s" "$local_s")
warm_ratio=$(ratio "$local_s" "$warm_s")
cat <<EOF

bench-bazel: Bazel ${release}, $(nproc) cores; $LIBS cc_library + $BINS cc_binary targets, $(actions "$local_sum") actions
  local        ${local_s}s   $local_sum
  remote cold  ${cold_s}s   $cold_sum
  remote warm  ${warm_s}s   $warm_sum
  (remote: mound + one workerd --jobs 2 on this machine, bazel --jobs=$REMOTE_JOBS)

remote cold / local  = ${cold_ratio}x   $(verdict "$cold_ratio" 1.3 "<=")  aim <= 1.3x
local / remote warm  = ${warm_ratio}x   $(verdict "$warm_ratio" 3 ">=")  aim >= 3x
EOF
