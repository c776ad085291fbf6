package workerd_test

import (
	"fmt"
	"os/exec"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/workerd"
)

// The benchmarks of FUSE inputs against hardlinked ones (issue 4; figures
// in BENCHMARKS.md, run by scripts/bench-inputs.sh). Each measures the
// modes alternately in one run and reports medians and their ratio: the
// machine is shared, so only ratios within one run mean anything.

// serverGC mirrors bin/mound's GOGC=400 for a benchmark: the in-process
// cluster shares one heap between the server's in-memory CAS (tens of MB of
// inputs) and the worker, and at Go's default the collections of the
// server's heap stall the worker's FUSE requests, which they do not when
// the two are separate processes.
func serverGC(b *testing.B) {
	old := debug.SetGCPercent(400)
	b.Cleanup(func() { debug.SetGCPercent(old) })
}

// inputModes are the ways of presenting inputs the benchmarks compare.
var inputModes = []struct {
	name string
	opts clusterOptions
}{
	{"hardlink", clusterOptions{inputs: workerd.InputsHardlink}},
	{"fuse", clusterOptions{inputs: workerd.InputsFUSE}},
	{"fuse-nopassthrough", clusterOptions{inputs: workerd.InputsFUSE, noPassthrough: true}},
}

// timings collects durations by name.
type timings map[string][]time.Duration

func (tm timings) add(name string, d time.Duration) { tm[name] = append(tm[name], d) }

func (tm timings) median(name string) time.Duration {
	ds := slices.Clone(tm[name])
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// span is the time between two stage timestamps.
func span(from, to *timestamppb.Timestamp) time.Duration { return to.AsTime().Sub(from.AsTime()) }

// BenchmarkSparseRead: an action that reads 1% (200 files) of a
// 20,000-file input root, on a worker with an empty cache (cold) and again
// on the same worker (warm). "start" is the worker's time until the
// command starts (inputs ready), "total" the client's Execute latency.
func BenchmarkSparseRead(b *testing.B) {
	serverGC(b)
	store := memstore.New()
	seed := &cluster{store: store}
	var dirs []*repb.DirectoryNode
	for d := range 200 {
		dir := &repb.Directory{}
		for f := range 100 {
			data := fmt.Appendf(nil, "file %d of directory %d\n%s", f, d, strings.Repeat("x", 1000))
			dir.Files = append(dir.Files, &repb.FileNode{Name: fmt.Sprintf("f%03d.c", f), Digest: seed.put(b, data).Proto()})
		}
		dirs = append(dirs, &repb.DirectoryNode{Name: fmt.Sprintf("d%03d", d), Digest: seed.putMsg(b, dir).Proto()})
	}
	root := seed.putMsg(b, &repb.Directory{Directories: dirs})
	var read []string
	for d := range 200 {
		read = append(read, fmt.Sprintf("d%03d/f%03d.c", d, d%100))
	}
	cmd := &repb.Command{Arguments: append([]string{"cat"}, read...), EnvironmentVariables: shPath}

	tm := timings{}
	for i := range b.N {
		for j := range 2 {
			m := inputModes[(i+j)%2] // alternate which mode goes first
			o := m.opts
			o.store = store
			c := newCluster(b, o)
			for _, temp := range []string{"cold", "warm"} {
				start := time.Now()
				resp := c.executeIn(b, root, cmd, 0)
				total := time.Since(start)
				if resp.GetResult().GetExitCode() != 0 || resp.GetStatus().GetCode() != 0 {
					b.Fatalf("%s %s: %v", m.name, temp, resp)
				}
				tm.add(m.name+"/"+temp+"/start", span(resp.Result.ExecutionMetadata.WorkerStartTimestamp, resp.Result.ExecutionMetadata.ExecutionStartTimestamp))
				tm.add(m.name+"/"+temp+"/total", total)
			}
			c.close()
		}
	}
	for _, temp := range []string{"cold", "warm"} {
		for _, m := range inputModes[:2] {
			b.ReportMetric(ms(tm.median(m.name+"/"+temp+"/start")), m.name+"-"+temp+"-start-ms")
			b.ReportMetric(ms(tm.median(m.name+"/"+temp+"/total")), m.name+"-"+temp+"-total-ms")
		}
		b.ReportMetric(float64(tm.median("hardlink/"+temp+"/total"))/float64(tm.median("fuse/"+temp+"/total")), "fuse-speedup-"+temp+"-x")
	}
}

// BenchmarkCompile: gcc -O2 on a large C file with 300 headers, on workers
// with a warm cache, hardlinked against FUSE with and without passthrough.
// "exec" is the command's run time, "worker" everything the worker did.
func BenchmarkCompile(b *testing.B) {
	serverGC(b)
	if _, err := exec.LookPath("gcc"); err != nil {
		b.Fatalf("the compile benchmark needs gcc: %v", err)
	}
	store := memstore.New()
	seed := &cluster{store: store}
	inc := &repb.Directory{}
	var main strings.Builder
	for h := range 300 {
		var hdr strings.Builder
		fmt.Fprintf(&hdr, "#ifndef H%d\n#define H%d\n", h, h)
		for f := range 20 {
			fmt.Fprintf(&hdr, "static inline int h%d_f%d(int x) { int s = 0; for (int i = 0; i < x; i++) s += (i ^ %d) * %d; return s; }\n", h, f, f, h)
		}
		fmt.Fprintf(&hdr, "struct s%d { int a[%d]; double d; };\n#endif\n", h, h+1)
		name := fmt.Sprintf("h%03d.h", h)
		inc.Files = append(inc.Files, &repb.FileNode{Name: name, Digest: seed.put(b, []byte(hdr.String())).Proto()})
		fmt.Fprintf(&main, "#include \"inc/%s\"\n", name)
	}
	for f := range 400 {
		fmt.Fprintf(&main, "int g%d(int x) { return h%03d_f%d(x) + h%03d_f%d(x + 1); }\n", f, f%300, f%20, (f*7)%300, (f+3)%20)
	}
	root := seed.putMsg(b, &repb.Directory{
		Files:       []*repb.FileNode{{Name: "main.c", Digest: seed.put(b, []byte(main.String())).Proto()}},
		Directories: []*repb.DirectoryNode{{Name: "inc", Digest: seed.putMsg(b, inc).Proto()}},
	})
	cmd := &repb.Command{
		Arguments:            []string{"gcc", "-O2", "-c", "main.c", "-o", "out/main.o"},
		EnvironmentVariables: shPath, OutputFiles: []string{"out/main.o"},
	}
	clusters := map[string]*cluster{}
	for _, m := range inputModes {
		o := m.opts
		o.store = store
		clusters[m.name] = newCluster(b, o)
		resp := clusters[m.name].executeIn(b, root, cmd, 0) // warms the worker's cache
		if resp.GetResult().GetExitCode() != 0 {
			b.Fatalf("%s: gcc failed: %s", m.name, seed.read(b, resp.GetResult().GetStderrDigest()))
		}
	}
	tm := timings{}
	b.ResetTimer()
	for i := range b.N {
		for j := range inputModes {
			m := inputModes[(i+j)%len(inputModes)] // rotate which mode goes first
			resp := clusters[m.name].executeIn(b, root, cmd, 0)
			if resp.GetResult().GetExitCode() != 0 {
				b.Fatalf("%s: %v", m.name, resp)
			}
			tm.add(m.name+"/exec", span(resp.Result.ExecutionMetadata.ExecutionStartTimestamp, resp.Result.ExecutionMetadata.ExecutionCompletedTimestamp))
			tm.add(m.name+"/worker", span(resp.Result.ExecutionMetadata.WorkerStartTimestamp, resp.Result.ExecutionMetadata.WorkerCompletedTimestamp))
		}
	}
	b.StopTimer()
	for _, m := range inputModes {
		b.ReportMetric(ms(tm.median(m.name+"/exec")), m.name+"-exec-ms")
		b.ReportMetric(ms(tm.median(m.name+"/worker")), m.name+"-worker-ms")
		if m.name != "hardlink" {
			b.ReportMetric(100*(float64(tm.median(m.name+"/worker"))/float64(tm.median("hardlink/worker"))-1), m.name+"-overhead-%")
		}
	}
}
