package bench

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrWrongAnswer is wrapped by the error of a workload whose server
// answered with bytes or results other than the ones written, or reported
// a present blob missing or a missing one present. A benchmark that reads
// wrong bytes fails rather than report a figure.
var ErrWrongAnswer = errors.New("server answered wrongly")

// Measure is one figure of one workload at one concurrency on one server.
type Measure struct {
	// Value is the figure in the unit of its row: milliseconds of the
	// median call for latencies, else operations or MB per second.
	Value float64 `json:"value"`
	// P99 is the 99th percentile latency in milliseconds, for latencies.
	P99 float64 `json:"p99,omitempty"`
	// Ops is how many operations (calls, blobs, results) were timed.
	Ops int `json:"ops"`
	// Bytes is how many bytes of content were moved, for byte rates.
	Bytes int64 `json:"bytes,omitempty"`
	// Calls is how many requests moved them, for the batch workloads.
	Calls int `json:"calls,omitempty"`
	// Seconds is the wall-clock time of the measurement.
	Seconds float64 `json:"seconds"`
	// Rounds is how many rounds the figure comes from: the best round
	// for rates, all rounds' calls together for latencies.
	Rounds int `json:"rounds"`

	durs []time.Duration // the calls of a latency, for merging rounds
}

// merge adds round, a measure of the same workload, to m: rates keep the
// best round, the one least disturbed by the rest of the machine;
// latencies pool the calls of all rounds.
func (m *Measure) merge(round Measure) {
	rounds := m.Rounds + 1
	switch {
	case round.durs != nil:
		durs := append(m.durs, round.durs...)
		*m = latency(durs, time.Duration((m.Seconds+round.Seconds)*float64(time.Second)))
	case m.Rounds == 0 || round.Value > m.Value:
		*m = round
	}
	m.Rounds = rounds
}

// opsRate is a throughput measure in operations per second of ops
// operations moving bytes of content in elapsed time.
func opsRate(ops int, bytes int64, elapsed time.Duration) Measure {
	return Measure{Value: float64(ops) / max(elapsed.Seconds(), 1e-9), Ops: ops, Bytes: bytes, Seconds: elapsed.Seconds()}
}

// byteRate is a throughput measure in MB per second of ops operations
// moving bytes of content in elapsed time.
func byteRate(ops int, bytes int64, elapsed time.Duration) Measure {
	return Measure{Value: float64(bytes) / 1e6 / max(elapsed.Seconds(), 1e-9), Ops: ops, Bytes: bytes, Seconds: elapsed.Seconds()}
}

// latency is a latency measure of calls that took durs, over elapsed.
func latency(durs []time.Duration, elapsed time.Duration) Measure {
	sorted := slices.Clone(durs)
	slices.Sort(sorted)
	return Measure{
		Value:   percentile(sorted, 0.50).Seconds() * 1e3,
		P99:     percentile(sorted, 0.99).Seconds() * 1e3,
		Ops:     len(durs),
		Seconds: elapsed.Seconds(),
		durs:    sorted,
	}
}

// percentile returns the nearest-rank p-th value of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// parallel calls fn for every item in [0, n), with at most limit calls in
// flight: limit is the concurrency being measured. worker, in [0, limit),
// names the goroutine making the call, so that each can own buffers. The
// first error cancels the ctx of the other calls; parallel waits for all of
// them and returns it. It returns how long the calls took together.
func parallel(ctx context.Context, n, limit int, fn func(ctx context.Context, worker, item int) error) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	start := time.Now()
	for w := range min(limit, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, w, i); err != nil {
					once.Do(func() { first = err })
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		return elapsed, first
	}
	return elapsed, context.Cause(ctx)
}
