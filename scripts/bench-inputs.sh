#!/bin/bash
# bench-inputs.sh measures FUSE inputs against hardlinked ones (issue 4):
# the Go benchmarks BenchmarkSparseRead and BenchmarkCompile (package
# workerd: in-process mound, a real workerd and sandbox, alternating the
# modes in one run) and BenchmarkLargeRead (package fuseinput: one large
# file through the mount). It needs root, /dev/fuse and gcc, as the tests
# do. ROUNDS (default 3) is each benchmark's -benchtime count.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
GO=${GO:-go}

out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$GO" test -run '^$' -bench 'BenchmarkSparseRead|BenchmarkCompile' -benchtime "${ROUNDS}x" -timeout 60m ./workerd | tee -a "$out" >&2
"$GO" test -run '^$' -bench 'BenchmarkLargeRead' -benchtime "${ROUNDS}x" -timeout 30m ./fuseinput | tee -a "$out" >&2

# metric NAME UNIT prints the value a benchmark line reports for UNIT.
metric() { grep "^$1" "$out" | tr '\t' '\n' | awk -v u="$2" '$2 == u { print $1 }' | head -n 1; }
verdict() { awk -v v="$1" -v op="$2" -v aim="$3" 'BEGIN { ok = (op == ">=" ? v >= aim : v <= aim); print (ok ? "PASS" : "MISS") }'; }

echo
echo "inputs: $ROUNDS rounds, medians; $(date -u +%FT%TZ); load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-44s %12s %12s %10s  %s\n' WORKLOAD HARDLINK FUSE RATIO AIM
for temp in cold warm; do
	h=$(metric BenchmarkSparseRead hardlink-$temp-total-ms)
	f=$(metric BenchmarkSparseRead fuse-$temp-total-ms)
	x=$(metric BenchmarkSparseRead fuse-speedup-$temp-x)
	hs=$(metric BenchmarkSparseRead hardlink-$temp-start-ms)
	fs=$(metric BenchmarkSparseRead fuse-$temp-start-ms)
	aim=
	[ "$temp" = cold ] && aim="$(verdict "$x" '>=' 10) FUSE >= 10x faster end to end"
	printf '%-44s %9.0f ms %9.0f ms %9.1fx  %s\n' "read 1% of 20,000 files, $temp: total" "$h" "$f" "$x" "$aim"
	printf '%-44s %9.1f ms %9.1f ms\n' "read 1% of 20,000 files, $temp: to start" "$hs" "$fs"
done
for mode in fuse fuse-nopassthrough; do
	h=$(metric BenchmarkCompile hardlink-worker-ms)
	f=$(metric BenchmarkCompile $mode-worker-ms)
	o=$(metric BenchmarkCompile $mode-overhead-%)
	printf '%-44s %9.0f ms %9.0f ms %8.1f %%  %s\n' "gcc -O2, 300 headers, warm ($mode)" "$h" "$f" "$o" "$(verdict "$o" '<=' 5) overhead < 5%"
done
for pass in true false; do
	line="BenchmarkLargeRead/passthrough=$pass"
	printf '%-44s %9.0f MB/s cold, %6.0f MB/s warm, plain read %6.0f MB/s (warm %.0f%% of plain)\n' \
		"256 MiB file through the mount (passthrough=$pass)" \
		"$(metric "$line" cold-MB/s)" "$(metric "$line" warm-MB/s)" "$(metric "$line" plain-MB/s)" "$(metric "$line" warm-%-of-plain)"
done
