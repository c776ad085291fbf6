package bench

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"slices"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Workload names, as rows of the Report carry them.
const (
	FindMissingBlobs   = "FindMissingBlobs"
	BatchUpdateBlobs   = "BatchUpdateBlobs"
	BatchReadBlobs     = "BatchReadBlobs"
	ByteStreamWrite    = "ByteStream Write"
	ByteStreamRead     = "ByteStream Read"
	ZstdWrite          = "ByteStream Write zstd"
	ZstdRead           = "ByteStream Read zstd"
	UpdateActionResult = "UpdateActionResult"
	GetActionResult    = "GetActionResult"
	// The exec workload's names are in exec.go.
)

// bench is one run: its options, content and client-side encoder.
type bench struct {
	opts Options
	src  *source
	// enc compresses the zstd workload's uploads before timing starts;
	// made once, as a client makes it.
	enc *zstd.Encoder
}

// workloadKeys name the steps of a run, for Options.Only.
var workloadKeys = []string{"findmissing", "batch", "stream", "zstd", "ac", "exec"}

// step is one workload of the run: a function that measures it on one
// server at one concurrency and returns a figure per name.
type step struct {
	key   string // one of workloadKeys
	names []string
	unit  string
	run   func(ctx context.Context, s *server, c int) ([]Measure, error)
}

// Run measures the server at opts.Target and a Floor it starts for the
// purpose, and reports both. It fails, without a report, when either server
// fails a request or answers wrongly (ErrWrongAnswer). Progress goes to
// opts.Log.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	floor, err := StartFloor()
	if err != nil {
		return nil, err
	}
	defer floor.Stop()
	target, err := dial(ctx, "target", opts.Target, opts.Instance)
	if err != nil {
		return nil, err
	}
	defer target.close()
	fl, err := dial(ctx, "floor", floor.Addr(), opts.Instance)
	if err != nil {
		return nil, err
	}
	defer fl.close()
	enc, err := newEncoder()
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	logf(opts.Log, "generating content")
	b := &bench{opts: opts, src: newSource(max(opts.StreamSize, opts.LocalBytes)), enc: enc}
	rep := &Report{Target: opts.Target, Floor: floor.Addr(), GOMAXPROCS: runtime.GOMAXPROCS(0), Rounds: opts.Rounds}
	logf(opts.Log, "single-core SHA-256 and zstd")
	if rep.Local, err = measureLocal(b.src, opts.LocalBytes); err != nil {
		return nil, err
	}
	// The disk, like the single-core figures, is measured at the start
	// and again at the end, and the best kept.
	measureDisk := opts.DiskDir != "" && (len(opts.Only) == 0 || slices.Contains(opts.Only, "stream"))
	if measureDisk {
		if err := b.disk(rep); err != nil {
			return nil, err
		}
	}

	steps := []step{
		{"findmissing", []string{FindMissingBlobs}, "ms", func(ctx context.Context, s *server, c int) ([]Measure, error) {
			m, err := b.findMissing(ctx, s, c)
			return []Measure{m}, err
		}},
		{"batch", []string{BatchUpdateBlobs, BatchReadBlobs}, "blobs/s", func(ctx context.Context, s *server, c int) ([]Measure, error) {
			u, r, err := b.batch(ctx, s, c)
			return []Measure{u, r}, err
		}},
		{"stream", []string{ByteStreamWrite, ByteStreamRead}, "MB/s", func(ctx context.Context, s *server, c int) ([]Measure, error) {
			w, r, err := b.stream(ctx, s, c, false)
			return []Measure{w, r}, err
		}},
		{"zstd", []string{ZstdWrite, ZstdRead}, "MB/s", func(ctx context.Context, s *server, c int) ([]Measure, error) {
			w, r, err := b.stream(ctx, s, c, true)
			return []Measure{w, r}, err
		}},
		{"ac", []string{UpdateActionResult, GetActionResult}, "ops/s", func(ctx context.Context, s *server, c int) ([]Measure, error) {
			u, g, err := b.actionCache(ctx, s, c)
			return []Measure{u, g}, err
		}},
	}
	for _, st := range steps {
		if len(opts.Only) > 0 && !slices.Contains(opts.Only, st.key) {
			continue
		}
		if st.key == "zstd" && !target.zstd {
			rep.Notes = append(rep.Notes, "the target does not advertise zstd compressed-blobs: zstd workloads skipped")
			continue
		}
		for _, c := range opts.Concurrency {
			rows := make([]Row, len(st.names))
			for i, name := range st.names {
				rows[i] = Row{Workload: name, Concurrency: c, Unit: st.unit}
			}
			for round := range opts.Rounds {
				for _, s := range []*server{target, fl} {
					// Collect the previous measurement's garbage and
					// return it to the OS now: otherwise the runtime
					// does both during the next measurement, which then
					// runs slower than the one before it whichever
					// server it measures.
					debug.FreeOSMemory()
					logf(opts.Log, "%s at concurrency %d on the %s, round %d of %d", st.names, c, s.name, round+1, opts.Rounds)
					ms, err := st.run(ctx, s, c)
					if err != nil {
						return nil, fmt.Errorf("%v at concurrency %d: %w", st.names, c, err)
					}
					for i, m := range ms {
						if s == target {
							rows[i].Target.merge(m)
						} else {
							rows[i].Floor.merge(m)
						}
					}
				}
				// The floor keeps nothing between measurements: memory,
				// not gRPC, would otherwise grow with the run.
				floor.store.reset()
				fl.findMissing, fl.acBlobs = nil, nil
			}
			rep.Rows = append(rep.Rows, rows...)
		}
	}
	if len(opts.Only) == 0 || slices.Contains(opts.Only, "exec") {
		if err := b.execRows(ctx, target, rep); err != nil {
			return nil, err
		}
	}
	// The single-core figures are measured again at the end and the best
	// kept, as a machine busy at one moment would make them too low.
	logf(opts.Log, "single-core SHA-256 and zstd, again")
	again, err := measureLocal(b.src, opts.LocalBytes)
	if err != nil {
		return nil, err
	}
	rep.Local = rep.Local.best(again)
	if measureDisk {
		if err := b.disk(rep); err != nil {
			return nil, err
		}
	}
	for i := range rep.Rows {
		rep.Rows[i].judge(rep.Local)
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// execRows measures the exec workload on the target, which must execute
// actions, and adds its rows, or a note when the target does not execute.
// It has no floor and no rounds: each figure pools all its calls.
func (b *bench) execRows(ctx context.Context, target *server, rep *Report) error {
	if !target.executes {
		rep.Notes = append(rep.Notes, "the target does not advertise exec_enabled: exec workload skipped")
		return nil
	}
	logf(b.opts.Log, "exec: %d no-op executions, %d cache hits of each kind, on the target", b.opts.ExecActions, b.opts.ExecCacheHits)
	debug.FreeOSMemory()
	noop, get, cached, phases, err := b.exec(ctx, target)
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	for _, r := range []struct {
		name string
		m    Measure
	}{{ExecuteNoop, noop}, {GetActionResultHit, get}, {ExecuteCached, cached}} {
		r.m.Rounds = 1
		rep.Rows = append(rep.Rows, Row{Workload: r.name, Concurrency: 1, Unit: "ms", Target: r.m})
	}
	rep.Notes = append(rep.Notes, phases.note())
	return nil
}

// disk measures the disk in Options.DiskDir and keeps the best of it and
// rep.Disk in rep.Disk.
func (b *bench) disk(rep *Report) error {
	logf(b.opts.Log, "durable writes of %d MiB in %s", b.opts.StreamSize>>20, b.opts.DiskDir)
	debug.FreeOSMemory()
	d, err := measureDisk(b.opts.DiskDir, b.src.random[:b.opts.StreamSize])
	if err != nil {
		return err
	}
	if rep.Disk != nil {
		d = rep.Disk.best(d)
	}
	rep.Disk = &d
	return nil
}

// newEncoder returns the client's zstd encoder: SpeedFastest, the level
// Local.ZstdFastest measures, with one EncodeAll per core at a time.
func newEncoder() (*zstd.Encoder, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	return enc, nil
}

func logf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, "mound-bench: "+format+"\n", args...)
	}
}
