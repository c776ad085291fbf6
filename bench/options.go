package bench

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// Options configure Run. Start from DefaultOptions or QuickOptions; the
// zero value is not usable (Validate says why).
type Options struct {
	// Target is the host:port of the REAPI server under test (plaintext
	// gRPC). Required.
	Target string
	// Instance is the REAPI instance name used with the target; the floor
	// ignores it.
	Instance string
	// Rounds is how many times each workload is measured on each server
	// at each concurrency, alternating between the servers so that both
	// see the same disturbances from the rest of the machine. The counts
	// below are per round.
	Rounds int
	// FindMissingDigests is how many digests each FindMissingBlobs call
	// asks for; half of them are uploaded first, so half are present.
	FindMissingDigests int
	// FindMissingCalls is how many calls are timed.
	FindMissingCalls int
	// BatchBlobs is how many small blobs are uploaded and read back with
	// the batch RPCs.
	BatchBlobs int
	// BatchMinSize and BatchMaxSize bound the sizes of batch blobs, which
	// are uniformly distributed between them.
	BatchMinSize, BatchMaxSize int
	// StreamBlobs is how many large blobs are written and read back with
	// ByteStream, for each of identity and zstd.
	StreamBlobs int
	// StreamSize is the size in bytes of each ByteStream blob.
	StreamSize int
	// ActionResults is how many action results are stored and fetched.
	ActionResults int
	// ExecActions is how many executions of the no-op action are timed
	// (exec workload).
	ExecActions int
	// ExecCacheHits is how many GetActionResult calls, and how many
	// cached Executes, of the executed no-op action are timed.
	ExecCacheHits int
	// LocalBytes is the size of the buffer the single-core SHA-256 and
	// zstd figures are measured on.
	LocalBytes int
	// Only lists the workloads to run, by key: "findmissing", "batch",
	// "stream", "zstd", "ac", "exec". Empty runs them all.
	Only []string
	// Concurrency lists the numbers of requests in flight to measure at.
	// The exec workload ignores it: it measures latencies at concurrency
	// 1 only.
	Concurrency []int
	// DiskDir, when set, is a directory in the file system the target
	// keeps its data in: Run then measures there the disk's durable write
	// rate (Disk), the bound of a durable upload, and prints it beside the
	// ByteStream Write rows. It is measured only when the stream workload
	// runs.
	DiskDir string
	// Log receives a line as each measurement starts and ends; nil
	// discards them.
	Log io.Writer
}

// DefaultOptions returns the options of a full run, sized so that the
// whole run takes one to three minutes on a 2-core machine.
func DefaultOptions(target string) Options {
	return Options{
		Target:             target,
		Rounds:             5,
		FindMissingDigests: 10000,
		FindMissingCalls:   50,
		BatchBlobs:         10000,
		BatchMinSize:       1 << 10,
		BatchMaxSize:       16 << 10,
		StreamBlobs:        4,
		StreamSize:         64 << 20,
		ActionResults:      1000,
		ExecActions:        200,
		ExecCacheHits:      1000,
		LocalBytes:         64 << 20,
		Concurrency:        []int{1, 4},
	}
}

// QuickOptions returns the options of a smoke run that exercises every
// workload in a few seconds; its figures mean little.
func QuickOptions(target string) Options {
	return Options{
		Target:             target,
		Rounds:             2,
		FindMissingDigests: 200,
		FindMissingCalls:   8,
		BatchBlobs:         300,
		BatchMinSize:       1 << 10,
		BatchMaxSize:       16 << 10,
		StreamBlobs:        2,
		StreamSize:         3<<20 + 12345, // not a multiple of the chunk size
		ActionResults:      40,
		ExecActions:        10,
		ExecCacheHits:      20,
		LocalBytes:         4 << 20,
		Concurrency:        []int{1, 4},
	}
}

// maxConcurrency bounds Options.Concurrency: each request in flight of a
// stream workload holds a chunk buffer and a zstd decoder, and more than a
// few dozen requests say nothing more about a server on a small machine.
const maxConcurrency = 64

// Validate reports whether o is usable.
func (o Options) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(o.Target != "", "Target is required (host:port)")
	check(o.Rounds >= 1, "Rounds must be at least 1, not %d", o.Rounds)
	check(o.FindMissingDigests >= 2, "FindMissingDigests must be at least 2, not %d", o.FindMissingDigests)
	check(o.FindMissingCalls >= 1, "FindMissingCalls must be at least 1, not %d", o.FindMissingCalls)
	check(o.BatchBlobs >= 1, "BatchBlobs must be at least 1, not %d", o.BatchBlobs)
	check(o.BatchMinSize >= 1 && o.BatchMinSize <= o.BatchMaxSize && o.BatchMaxSize <= maxBatchBlob,
		"batch sizes must satisfy 1 <= BatchMinSize (%d) <= BatchMaxSize (%d) <= %d", o.BatchMinSize, o.BatchMaxSize, maxBatchBlob)
	check(o.StreamBlobs >= 1, "StreamBlobs must be at least 1, not %d", o.StreamBlobs)
	check(o.StreamSize >= minStreamSize, "StreamSize must be at least %d, not %d", minStreamSize, o.StreamSize)
	check(o.ActionResults >= 1, "ActionResults must be at least 1, not %d", o.ActionResults)
	check(o.ExecActions >= 1, "ExecActions must be at least 1, not %d", o.ExecActions)
	check(o.ExecCacheHits >= 1, "ExecCacheHits must be at least 1, not %d", o.ExecCacheHits)
	check(o.LocalBytes >= 1<<20, "LocalBytes must be at least 1 MiB, not %d", o.LocalBytes)
	check(len(o.Concurrency) > 0, "Concurrency must list at least one level")
	for _, c := range o.Concurrency {
		check(c >= 1 && c <= maxConcurrency, "concurrency %d is outside 1..%d", c, maxConcurrency)
	}
	for _, w := range o.Only {
		check(slices.Contains(workloadKeys, w), "unknown workload %q in Only (known: %v)", w, workloadKeys)
	}
	if len(errs) > 0 {
		return fmt.Errorf("bench: invalid options: %w", errors.Join(errs...))
	}
	return nil
}
