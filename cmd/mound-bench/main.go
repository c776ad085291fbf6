// Command mound-bench measures a running REAPI server against a floor gRPC
// server of its own and prints a table of the figures beside the aims they
// are judged by (see package bench). The exec workload needs the server to
// have a worker connected (scripts/bench.sh starts one).
//
//	mound-bench -target 127.0.0.1:8980 [-quick] [-json report.json] [-disk-dir DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/mound-build/mound/bench"
)

func main() {
	target := flag.String("target", "", "host:port of the REAPI server to measure (plaintext gRPC)")
	instance := flag.String("instance", "", "REAPI instance name")
	quick := flag.Bool("quick", false, "tiny smoke run: every workload, a few seconds, meaningless figures")
	againstFloor := flag.Bool("against-floor", false, "measure a second in-process floor as the target (no -target)")
	jsonPath := flag.String("json", "", "also write the report as JSON to this file")
	quiet := flag.Bool("q", false, "print no progress on stderr")
	d := bench.DefaultOptions("")
	findDigests := flag.Int("findmissing-digests", d.FindMissingDigests, "digests per FindMissingBlobs call (half present)")
	findCalls := flag.Int("findmissing-calls", d.FindMissingCalls, "FindMissingBlobs calls timed per concurrency")
	batchBlobs := flag.Int("batch-blobs", d.BatchBlobs, "small blobs uploaded and read per concurrency")
	streamBlobs := flag.Int("stream-blobs", d.StreamBlobs, "large blobs written and read per concurrency, identity and zstd each")
	streamMiB := flag.Int("stream-mib", d.StreamSize>>20, "size of each large blob in MiB")
	acOps := flag.Int("ac-ops", d.ActionResults, "action results stored and fetched per concurrency")
	execOps := flag.Int("exec-ops", d.ExecActions, "no-op executions timed (exec workload)")
	execHits := flag.Int("exec-hits", d.ExecCacheHits, "GetActionResult hits and cached Executes timed, each (exec workload)")
	conc := flag.String("concurrency", "1,4", "comma-separated requests in flight to measure at")
	rounds := flag.Int("rounds", d.Rounds, "measurements of each workload on each server, alternating; rates keep the best")
	diskDir := flag.String("disk-dir", "", "directory in the target's data file system: measure its durable write rate there, the bound of ByteStream Write")
	only := flag.String("only", "", "comma-separated workloads to run: findmissing, batch, stream, zstd, ac, exec (default all)")
	flag.Parse()

	opts := bench.DefaultOptions(*target)
	if *quick {
		opts = bench.QuickOptions(*target)
	}
	// Explicit flags override the preset, -quick's included.
	var err error
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "findmissing-digests":
			opts.FindMissingDigests = *findDigests
		case "findmissing-calls":
			opts.FindMissingCalls = *findCalls
		case "batch-blobs":
			opts.BatchBlobs = *batchBlobs
		case "stream-blobs":
			opts.StreamBlobs = *streamBlobs
		case "stream-mib":
			opts.StreamSize = *streamMiB << 20
		case "ac-ops":
			opts.ActionResults = *acOps
		case "exec-ops":
			opts.ExecActions = *execOps
		case "exec-hits":
			opts.ExecCacheHits = *execHits
		case "rounds":
			opts.Rounds = *rounds
		case "only":
			opts.Only = strings.Split(*only, ",")
		case "concurrency":
			opts.Concurrency, err = parseList(*conc)
		}
	})
	if err != nil {
		fail(fmt.Errorf("-concurrency: %w", err))
	}
	opts.Instance = *instance
	opts.DiskDir = *diskDir
	if !*quiet {
		opts.Log = os.Stderr
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *againstFloor {
		if opts.Target != "" {
			fail(fmt.Errorf("-against-floor and -target exclude each other"))
		}
		floor, err := bench.StartFloor()
		if err != nil {
			fail(err)
		}
		defer floor.Stop()
		opts.Target = floor.Addr()
	}
	rep, err := bench.Run(ctx, opts)
	if err != nil {
		fail(err)
	}
	if err := rep.WriteText(os.Stdout); err != nil {
		fail(err)
	}
	if *jsonPath != "" {
		f, err := os.Create(*jsonPath)
		if err != nil {
			fail(err)
		}
		if err := rep.WriteJSON(f); err != nil {
			fail(err)
		}
		if err := f.Close(); err != nil {
			fail(err)
		}
	}
}

func parseList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mound-bench:", err)
	os.Exit(1)
}
