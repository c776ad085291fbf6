package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// slowTargets are the genrules of testdata/shworkspace/slow: each sleeps 2 s
// and writes "slow-N".
const slowTargets = 4

// TestBazelWorkerKilledMidBuild runs independent slow actions on two
// one-slot workers and SIGKILLs a worker while its action's command runs:
// the scheduler must run that action again on the other worker, so the
// build succeeds with every output right, and nothing the killed worker ran
// may survive it.
func TestBazelWorkerKilledMidBuild(t *testing.T) {
	m := startMound(t)
	workers := []*worker{
		startWorker(t, m, workerOptions{Name: "loss-a", Jobs: 1, Inputs: "fuse"}),
		startWorker(t, m, workerOptions{Name: "loss-b", Jobs: 1, Inputs: "fuse"}),
	}
	w := newBazelWorkspace(t, "shworkspace")
	marker := uniqueMarker("kill")
	// What the slow genrules' sleeps are called (argv[0]); the marker
	// alone is also in the Bazel client's command line.
	sleepName := "mound-e2e-slow-" + marker

	type result struct {
		out string
		err error
	}
	built := make(chan result, 1)
	buildDone := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	// The owner of this goroutine is the cleanup below: a test that fails
	// before the build ends cancels it and waits. (Registered after the
	// workspace's cleanup, it runs before `bazel shutdown`.)
	go func() {
		defer close(buildDone)
		out, err := w.runContext(ctx, append([]string{"build", "//slow:all", "--jobs=4", "--define=marker=" + marker}, remoteExecutionFlags(m)...)...)
		built <- result{out, err}
	}()
	t.Cleanup(func() {
		cancel()
		<-buildDone
	})

	// Wait until one worker runs a slow action's command: its sleep is a
	// descendant of that workerd process. Bazel needs a few seconds to
	// start before it sends anything.
	var victim, survivor *worker
	waitFor(t, bazelCommandTimeout, "a worker runs a slow action", func() (bool, error) {
		select {
		case r := <-built:
			return false, fmt.Errorf("the build ended before any slow action ran: %v\n%s", r.err, r.out)
		default:
		}
		for _, p := range processesWith(t, sleepName) {
			for i, wk := range workers {
				if descendsFrom(p.Pid, wk.Pid()) {
					victim, survivor = wk, workers[1-i]
					return true, nil
				}
			}
		}
		return false, nil
	})
	info, err := m.Worker(victim.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.GetRunning()) == 0 {
		t.Errorf("the sandbox of worker %s runs a slow action, but mound lists it running nothing: %v", victim.Name, info)
	}
	t.Logf("killing worker %s (pid %d) %v after the build started; mound lists it running %v",
		victim.Name, victim.Pid(), time.Since(start).Round(time.Millisecond), info.GetRunning())
	victim.Kill(t)

	// The kernel ends each sandbox of a dead worker (parent-death signal
	// of the sandbox's init): its sleep goes at once, though the build's
	// other sleeps on the survivor may still run.
	waitFor(t, 10*time.Second, "no process of the killed worker's sandbox is left", func() (bool, error) {
		for _, p := range processesWith(t, sleepName) {
			if !descendsFrom(p.Pid, survivor.Pid()) {
				return false, nil
			}
		}
		return true, nil
	})

	r := <-built
	if r.err != nil {
		t.Fatalf("build with a worker killed mid-action: %v\n%s", r.err, r.out)
	}
	s := mustParseProcessSummary(t, r.out)
	t.Logf("build (%v): %d processes %v", time.Since(start).Round(time.Millisecond), s.Total, s.ByKind)
	if n := checkRanOnly(t, "build", s, "remote"); n != slowTargets {
		t.Errorf("build: %d remote processes, want %d", n, slowTargets)
	}
	for i := 1; i <= slowTargets; i++ {
		path := fmt.Sprintf("slow/slow%d.txt", i)
		if got, want := readOutput(t, w, path), fmt.Sprintf("slow-%d\n", i); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	if left := processesWith(t, sleepName); len(left) > 0 {
		t.Errorf("processes of the build's actions still run on the host after it ended: %v", left)
	}
	// The killed worker's FUSE exec roots lived in its sandboxes' mount
	// namespaces, gone with them: none is on the host.
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err != nil {
		t.Error(err)
	} else {
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 4 && f[4] == "/execroot" && strings.Contains(line, " - fuse.mound ") {
				t.Errorf("a FUSE exec root is mounted on the host after its worker was killed: %s", line)
			}
		}
	}
	if _, err := m.Worker(victim.Name); !errors.Is(err, errNoSuchWorker) {
		t.Errorf("mound still lists the killed worker %s (err %v)", victim.Name, err)
	}
	// The victim finished nothing after the snapshot taken just before the
	// kill (it was seconds from the end of its sleep), so the survivor ran
	// everything else, the action it lost included.
	if got, err := m.Worker(survivor.Name); err != nil {
		t.Error(err)
	} else if want := int64(slowTargets) - info.GetTasksDone(); got.GetTasksDone() != want {
		t.Errorf("worker %s finished %d tasks, want %d (the %d slow actions but the %d the killed worker had finished)",
			survivor.Name, got.GetTasksDone(), want, slowTargets, info.GetTasksDone())
	}
	if left := survivor.ActionDirs(t); len(left) > 0 {
		t.Errorf("action directories left in worker %s after the build: %v", survivor.Name, left)
	}
	// The killed worker could not clean up; a worker started again on its
	// directory does, before it takes work.
	if len(victim.ActionDirs(t)) == 0 {
		t.Errorf("the killed worker %s left no action directory: the check below means nothing", victim.Name)
	}
	restarted := startWorker(t, m, workerOptions{Name: victim.Name + "-restarted", Jobs: 1, Dir: victim.Dir})
	if left := restarted.ActionDirs(t); len(left) > 0 {
		t.Errorf("worker %s started on the killed worker's directory left its action directories: %v", restarted.Name, left)
	}
	if t.Failed() {
		t.Logf("Bazel's output:\n%s", r.out)
	}
}
