package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/mound-build/mound/cas/digest"
)

// TestRunQuickAgainstFloor runs the whole bench in quick mode with a floor
// as the target, so that every workload, check and report path runs in
// make test.
func TestRunQuickAgainstFloor(t *testing.T) {
	floor, err := StartFloor()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(floor.Stop)
	var log bytes.Buffer
	opts := QuickOptions(floor.Addr())
	opts.Log = &log
	opts.DiskDir = t.TempDir()
	rep, err := Run(t.Context(), opts)
	if err != nil {
		t.Fatalf("Run: %v\nlog:\n%s", err, log.String())
	}

	workloads := []string{
		FindMissingBlobs, BatchUpdateBlobs, BatchReadBlobs, ByteStreamWrite, ByteStreamRead,
		ZstdWrite, ZstdRead, UpdateActionResult, GetActionResult,
	}
	if want := len(workloads) * len(opts.Concurrency); len(rep.Rows) != want {
		t.Errorf("%d rows, want %d", len(rep.Rows), want)
	}
	seen := map[string]int{}
	for _, r := range rep.Rows {
		seen[r.Workload]++
		for side, m := range map[string]Measure{"target": r.Target, "floor": r.Floor} {
			if m.Value <= 0 || m.Ops <= 0 || m.Seconds <= 0 || (r.latency() && m.P99 < m.Value) {
				t.Errorf("%s at %d, %s: figure not positive or p99 below p50: %+v", r.Workload, r.Concurrency, side, m)
			}
		}
		if r.Ratio <= 0 {
			t.Errorf("%s at %d: ratio %v", r.Workload, r.Concurrency, r.Ratio)
		}
		hasAim := r.Workload != ZstdWrite && r.Workload != UpdateActionResult && r.Workload != GetActionResult
		if hasAim != (r.Verdict == "PASS" || r.Verdict == "MISS") {
			t.Errorf("%s at %d: verdict %q, aim %q", r.Workload, r.Concurrency, r.Verdict, r.Aim)
		}
	}
	for _, w := range workloads {
		if seen[w] != len(opts.Concurrency) {
			t.Errorf("workload %s has %d rows, want one per concurrency", w, seen[w])
		}
	}
	if !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.Contains(n, "exec workload skipped") }) {
		t.Errorf("notes %q do not say the exec workload was skipped against a floor, which does not execute", rep.Notes)
	}
	l := rep.Local
	if l.SHA256 <= 0 || l.ZstdFastest <= 0 || l.ZstdDefault <= 0 || l.ZstdFastestRatio <= 1 || l.ZstdDefaultRatio <= 1 {
		t.Errorf("single-core figures not positive or data not compressible: %+v", l)
	}

	if d := rep.Disk; d == nil || d.Write <= 0 || d.Bytes != opts.StreamSize || d.Tries != 4*diskRepeats || d.BatchMillis <= 0 || d.BatchBytes <= 0 {
		t.Errorf("disk figure missing, not positive or not from every try: %+v", d)
	}
	if left, _ := os.ReadDir(opts.DiskDir); len(left) != 0 {
		t.Errorf("the disk measurement left %d files in %s", len(left), opts.DiskDir)
	}

	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range append(workloads, "PASS", "aims:", "SHA-256", "disk: durable write", "ByteStream Write at 4 is", "durable append of a") {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Rows) != len(rep.Rows) {
		t.Errorf("JSON report does not read back (%v):\n%s", err, js.String())
	}
}

// TestWorkloadsDetectWrongAnswers runs each workload against a floor that
// changes whatever it is asked to read: every one must fail with
// ErrWrongAnswer rather than report a figure.
func TestWorkloadsDetectWrongAnswers(t *testing.T) {
	floor, err := startFloor(true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(floor.Stop)
	ctx := t.Context()
	s, err := dial(ctx, "corrupt floor", floor.Addr(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	opts := QuickOptions(floor.Addr())
	b := newTestBench(t, opts)

	for _, tc := range []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{FindMissingBlobs, func(ctx context.Context) error { _, err := b.findMissing(ctx, s, 2); return err }},
		{BatchReadBlobs, func(ctx context.Context) error { _, _, err := b.batch(ctx, s, 2); return err }},
		{ByteStreamRead, func(ctx context.Context) error { _, _, err := b.stream(ctx, s, 2, false); return err }},
		{ZstdRead, func(ctx context.Context) error { _, _, err := b.stream(ctx, s, 2, true); return err }},
		{GetActionResult, func(ctx context.Context) error { _, _, err := b.actionCache(ctx, s, 2); return err }},
	} {
		if err := tc.run(ctx); !errors.Is(err, ErrWrongAnswer) {
			t.Errorf("%s against a corrupt server: got %v, want ErrWrongAnswer", tc.name, err)
		}
	}
}

func newTestBench(t *testing.T, opts Options) *bench {
	enc, err := newEncoder()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { enc.Close() })
	return &bench{opts: opts, src: newSource(max(opts.StreamSize, opts.LocalBytes)), enc: enc}
}

// TestStreamBlobs checks that a stream blob's digest, pieces and
// comparisons agree with its content laid out whole.
func TestStreamBlobs(t *testing.T) {
	const size = 10000
	src := newSource(size)
	for _, text := range []bool{false, true} {
		blobs, err := src.streamBlobs(3, size, text)
		if err != nil {
			t.Fatal(err)
		}
		if blobs[0].d == blobs[1].d {
			t.Errorf("text=%v: two blobs have the same digest %v", text, blobs[0].d)
		}
		for _, bl := range blobs {
			whole := bl.bytes()
			if got := digest.OfBytes(whole); got != bl.d {
				t.Fatalf("text=%v: digest %v, content hashes to %v", text, bl.d, got)
			}
			scratch := make([]byte, size)
			for _, r := range []struct{ off, n int }{
				{0, 100}, {0, size}, {size - tailSize - 10, 20}, {size - tailSize, tailSize},
				{size - 5, 100}, {size - tailSize - 1, 1}, {size - 1, 1}, {4096, 4096},
			} {
				got := bl.slice(int64(r.off), r.n, scratch)
				want := whole[r.off:min(r.off+r.n, size)]
				if !bytes.Equal(got, want) {
					t.Errorf("text=%v: slice(%d, %d) differs from the content", text, r.off, r.n)
				}
				if !bl.matches(int64(r.off), want) {
					t.Errorf("text=%v: matches(%d, %d bytes) = false for the content", text, r.off, len(want))
				}
				changed := bytes.Clone(want)
				changed[len(changed)-1] ^= 1
				if bl.matches(int64(r.off), changed) {
					t.Errorf("text=%v: matches(%d, %d bytes) = true for changed content", text, r.off, len(want))
				}
			}
			if bl.matches(size-1, []byte{whole[size-1], 0}) {
				t.Errorf("text=%v: matches accepts bytes beyond the end", text)
			}
		}
	}
}

// TestBatchesFitLimits checks that batches cover every blob in order and
// fit both the server's limit and a 4 MiB message.
func TestBatchesFitLimits(t *testing.T) {
	src := newSource(minStreamSize)
	blobs := src.smallBlobs(2000, 1, 16<<10)
	for _, limit := range []int64{16 << 10, 100 << 10, floorMaxBatchBytes, batchMessageLimit} {
		s := &server{batchBytes: limit}
		n := 0
		for _, batch := range s.batches(blobs) {
			var content, estimate int64
			for _, b := range batch {
				if b.d != blobs[n].d {
					t.Fatalf("limit %d: blob %d out of order", limit, n)
				}
				n++
				content += b.d.Size
				estimate += b.d.Size + batchBlobOverhead
			}
			if len(batch) == 0 || content > limit || estimate > batchMessageLimit {
				t.Errorf("limit %d: batch of %d blobs, %d bytes (estimate %d)", limit, len(batch), content, estimate)
			}
		}
		if n != len(blobs) {
			t.Errorf("limit %d: batches hold %d of %d blobs", limit, n, len(blobs))
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		ok   bool
	}{
		{"default", DefaultOptions("localhost:1"), true},
		{"quick", QuickOptions("localhost:1"), true},
		{"zero", Options{}, false},
		{"no target", DefaultOptions(""), false},
		{"concurrency 0", func() Options { o := QuickOptions("h:1"); o.Concurrency = []int{0}; return o }(), false},
		{"tiny stream", func() Options { o := QuickOptions("h:1"); o.StreamSize = tailSize; return o }(), false},
		{"sizes reversed", func() Options { o := QuickOptions("h:1"); o.BatchMinSize = 100; o.BatchMaxSize = 10; return o }(), false},
	} {
		if err := tc.opts.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
