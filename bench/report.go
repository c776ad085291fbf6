package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of Run: a row per workload and concurrency, and the
// single-core figures of the machine.
type Report struct {
	Target     string   `json:"target"`
	Floor      string   `json:"floor"`
	GOMAXPROCS int      `json:"gomaxprocs"`
	Rounds     int      `json:"rounds"`
	Seconds    float64  `json:"seconds"`
	Local      Local    `json:"local"`
	Rows       []Row    `json:"rows"`
	Notes      []string `json:"notes,omitempty"`
	// Disk is the durable write rate of the target's file system, when
	// Options.DiskDir was set and the stream workload ran.
	Disk *Disk `json:"disk,omitempty"`
}

// Row is one workload at one concurrency on both servers.
type Row struct {
	Workload    string `json:"workload"`
	Concurrency int    `json:"concurrency"`
	// Unit is the unit of the Measures' Value: "ms" for latencies (median
	// call), else a rate ("blobs/s", "MB/s", "ops/s").
	Unit   string  `json:"unit"`
	Target Measure `json:"target"`
	Floor  Measure `json:"floor"`
	// Ratio compares the target with the floor: for rates, the target's
	// as a fraction of the floor's (1 is as fast as the floor); for
	// latencies, the target's median as a multiple of the floor's (1 is as
	// quick as the floor). It is 0 for the exec workload's rows, whose
	// Floor is empty: the floor does not execute.
	Ratio float64 `json:"ratio"`
	// Aim states what the row is judged by, and Verdict is PASS or MISS;
	// both are empty for rows without an aim.
	Aim     string `json:"aim,omitempty"`
	Verdict string `json:"verdict,omitempty"`
}

// Aims are the targets the figures are judged by.
const (
	// AimFindMissingLatency: FindMissingBlobs median latency within this
	// multiple of the floor's.
	AimFindMissingLatency = 1.5
	// AimBatchFraction: batch update and read rates at least this
	// fraction of the floor's.
	AimBatchFraction = 0.5
	// AimStreamFraction: ByteStream write and read rates at least this
	// fraction of the floor's.
	AimStreamFraction = 0.8
)

// latency reports whether the row measures latency rather than a rate.
func (r *Row) latency() bool { return r.Unit == "ms" }

// judge fills Ratio, Aim and Verdict.
func (r *Row) judge(l Local) {
	if r.Floor.Value > 0 {
		r.Ratio = r.Target.Value / r.Floor.Value
	}
	var pass bool
	switch r.Workload {
	case FindMissingBlobs:
		r.Aim = fmt.Sprintf("p50 <= %.1fx floor", AimFindMissingLatency)
		pass = r.Ratio <= AimFindMissingLatency
	case BatchUpdateBlobs, BatchReadBlobs:
		r.Aim = fmt.Sprintf(">= %.0f%% of floor", 100*AimBatchFraction)
		pass = r.Ratio >= AimBatchFraction
	case ByteStreamWrite, ByteStreamRead:
		r.Aim = fmt.Sprintf(">= %.0f%% of floor", 100*AimStreamFraction)
		pass = r.Ratio >= AimStreamFraction
	case ExecuteNoop:
		r.Aim = fmt.Sprintf("p50 < %s ms (absolute)", number(AimExecuteNoopP50.Seconds()*1e3))
		pass = r.Target.Value < AimExecuteNoopP50.Seconds()*1e3
	case GetActionResultHit, ExecuteCached:
		r.Aim = fmt.Sprintf("p50 < %s ms (absolute)", number(AimCacheHitP50.Seconds()*1e3))
		pass = r.Target.Value < AimCacheHitP50.Seconds()*1e3
	case ZstdRead:
		// Uncompressed MB/s must beat one core's compression speed at
		// SpeedFastest: a server compressing every read on one core
		// cannot reach it.
		r.Aim = fmt.Sprintf("> %s MB/s (zstd, 1 core)", number(l.ZstdFastest))
		pass = r.Target.Value > l.ZstdFastest
	default:
		return
	}
	r.Verdict = "MISS"
	if pass {
		r.Verdict = "PASS"
	}
}

// WriteText prints r as a plain-text table.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "mound-bench: target %s against floor %s (in-process), GOMAXPROCS %d, %d rounds (rates: best round; latencies: all calls), %v\n",
		r.Target, r.Floor, r.GOMAXPROCS, r.Rounds, time.Duration(r.Seconds*float64(time.Second)).Round(time.Second))
	fmt.Fprintf(&b, "one core, %d MiB: SHA-256 %s MB/s; zstd compress SpeedFastest %s MB/s (ratio %.1fx), SpeedDefault %s MB/s (ratio %.1fx)\n\n",
		r.Local.Bytes>>20, number(r.Local.SHA256), number(r.Local.ZstdFastest), r.Local.ZstdFastestRatio,
		number(r.Local.ZstdDefault), r.Local.ZstdDefaultRatio)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tCONC\tTARGET\tFLOOR\tTARGET vs FLOOR\tAIM\t")
	pass, miss := 0, 0
	for _, row := range r.Rows {
		var target, floor, ratio string
		switch {
		case row.Floor.Ops == 0:
			// The exec workload: the floor does not execute.
			target = fmt.Sprintf("%s ms p50, %s p99", number(row.Target.Value), number(row.Target.P99))
			floor, ratio = "-", "no floor"
		case row.latency():
			target = fmt.Sprintf("%s ms p50, %s p99", number(row.Target.Value), number(row.Target.P99))
			floor = fmt.Sprintf("%s ms p50, %s p99", number(row.Floor.Value), number(row.Floor.P99))
			ratio = fmt.Sprintf("%.2fx floor latency", row.Ratio)
		default:
			target = number(row.Target.Value) + " " + row.Unit
			floor = number(row.Floor.Value) + " " + row.Unit
			ratio = fmt.Sprintf("%.0f%% of floor", 100*row.Ratio)
		}
		aim := ""
		if row.Aim != "" {
			aim = row.Verdict + "  " + row.Aim
		}
		switch row.Verdict {
		case "PASS":
			pass++
		case "MISS":
			miss++
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t\n", row.Workload, row.Concurrency, target, floor, ratio, aim)
	}
	tw.Flush()
	fmt.Fprintf(&b, "\naims: %d PASS, %d MISS\n", pass, miss)
	for _, n := range r.diskNotes() {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// diskNotes compare the ByteStream Write rows with the disk's durable
// write rate, and the BatchUpdateBlobs row at concurrency 1 with what the
// disk's durable appends allow; none when the disk was not measured.
func (r *Report) diskNotes() []string {
	if r.Disk == nil || r.Disk.Write <= 0 {
		return nil
	}
	var notes []string
	var b strings.Builder
	fmt.Fprintf(&b, "disk: durable write %s MB/s (%d MiB files, write + fsync, best of %d, in %s); a durable upload cannot beat it",
		number(r.Disk.Write), r.Disk.Bytes>>20, r.Disk.Tries, r.Disk.Dir)
	sep := ": "
	for _, row := range r.Rows {
		if row.Workload == ByteStreamWrite {
			fmt.Fprintf(&b, "%s%s at %d is %.0f%% of it (floor %.0f%%)", sep, row.Workload, row.Concurrency,
				100*row.Target.Value/r.Disk.Write, 100*row.Floor.Value/r.Disk.Write)
			sep = ", "
		}
	}
	notes = append(notes, b.String())
	for _, row := range r.Rows {
		if row.Workload != BatchUpdateBlobs || row.Concurrency != 1 || row.Floor.Calls == 0 || r.Disk.BatchMillis <= 0 {
			continue
		}
		// One batch at a time: each is received whole before it can be
		// made durable, and answered only after, so a durable server
		// takes at least the floor's time plus the disk's.
		floorMillis := row.Floor.Seconds * 1e3 / float64(row.Floor.Calls)
		notes = append(notes, fmt.Sprintf("disk: a durable append of a %.1f MB batch takes %s ms (fdatasync, best of %d); %s at 1 in flight then takes at least the floor's %s ms a batch plus that: %.0f%% of floor",
			float64(r.Disk.BatchBytes)/1e6, number(r.Disk.BatchMillis), r.Disk.Tries, row.Workload,
			number(floorMillis), 100*floorMillis/(floorMillis+r.Disk.BatchMillis)))
	}
	return notes
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	e.SetEscapeHTML(false)
	return e.Encode(r)
}

// number formats a figure with about three significant digits.
func number(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
