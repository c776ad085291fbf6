package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// cWorkspaceOutput is what //app:calc of testdata/cworkspace prints.
const cWorkspaceOutput = "CALC: prime(10000)=104729 fib(1000)%1000000007=517691607 fnv=8f8af964733a4a0a\n"

// localRunners are the summary kinds of actions Bazel ran on this machine.
// Bazel picks linux-sandbox where it can create namespaces (as root on the
// CI VMs) and falls back to processwrapper-sandbox where it cannot; either
// is fine for a test of the remote cache.
var localRunners = []string{"linux-sandbox", "processwrapper-sandbox", "local"}

// TestBazelRemoteCache builds a C workspace with Bazel against mound as
// remote cache, cleans, and builds again: the second build must take every
// action from mound, and the binary it downloaded must run.
func TestBazelRemoteCache(t *testing.T) {
	w := newBazelWorkspace(t, "cworkspace")
	m := startMound(t)
	build := []string{
		"build", "//...",
		"--remote_cache=grpc://" + m.GRPCAddr,
		"--remote_timeout=60",
		"--remote_retries=0",
		"--noshow_progress", "--color=no", "--curses=no",
	}

	start := time.Now()
	out := w.mustRun(t, build...)
	first := mustParseProcessSummary(t, out)
	t.Logf("first build (%v): %d processes %v", time.Since(start).Round(time.Millisecond), first.Total, first.ByKind)
	ranLocally := 0
	for kind, n := range first.ByKind {
		switch {
		case kind == "internal":
		case slices.Contains(localRunners, kind):
			ranLocally += n
		default:
			t.Errorf("first build: %d processes ran as %q, want only internal and %v (mound was empty)", n, kind, localRunners)
		}
	}
	if ranLocally == 0 {
		t.Errorf("first build ran no action locally: %v", first.ByKind)
	}
	if t.Failed() {
		t.Fatalf("Bazel's output:\n%s", out)
	}
	checkCalc(t, w)

	w.mustRun(t, "clean")
	start = time.Now()
	out = w.mustRun(t, build...)
	second := mustParseProcessSummary(t, out)
	t.Logf("second build (%v): %d processes %v", time.Since(start).Round(time.Millisecond), second.Total, second.ByKind)
	for kind, n := range second.ByKind {
		if kind != "internal" && kind != "remote cache hit" {
			t.Errorf("second build: %d processes ran as %q, want every action to be a remote cache hit", n, kind)
		}
	}
	if hits := second.ByKind["remote cache hit"]; hits != ranLocally {
		t.Errorf("second build: %d remote cache hits, want %d (the actions the first build ran and uploaded)", hits, ranLocally)
	}
	if t.Failed() {
		t.Fatalf("Bazel's output:\n%s", out)
	}
	checkCalc(t, w)
}

// checkCalc runs the binary Bazel built (or downloaded) and checks what it
// prints.
func checkCalc(t *testing.T, w *bazelWorkspace) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := exec.CommandContext(ctx, filepath.Join(w.Dir, "bazel-bin", "app", "calc")).CombinedOutput()
	if err != nil {
		t.Fatalf("bazel-bin/app/calc: %v\n%s", err, got)
	}
	if string(got) != cWorkspaceOutput {
		t.Errorf("bazel-bin/app/calc printed %q, want %q", got, strings.TrimSpace(cWorkspaceOutput))
	}
}
