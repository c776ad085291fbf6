package e2e

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// remoteExecutionFlags are the flags of a Bazel build that runs every action
// on m's workers. Without local fallback and retries, a failure of mound is
// a failed build, not a quiet local run or a slow success.
func remoteExecutionFlags(m *mound) []string {
	return []string{
		"--remote_executor=grpc://" + m.GRPCAddr,
		"--noremote_local_fallback",
		"--remote_retries=0",
		"--remote_timeout=60",
		"--noshow_progress", "--color=no", "--curses=no",
	}
}

// checkRanOnly fails the test unless every process of the summary other than
// Bazel's internal ones ran as kind ("remote", "remote cache hit"), and at
// least one did. It returns how many did.
func checkRanOnly(t *testing.T, step string, s processSummary, kind string) int {
	t.Helper()
	for k, n := range s.ByKind {
		if k != "internal" && k != kind {
			t.Errorf("%s: %d processes ran as %q, want every action %q", step, n, k, kind)
		}
	}
	if s.ByKind[kind] == 0 {
		t.Errorf("%s: no process ran as %q: %v", step, kind, s.ByKind)
	}
	return s.ByKind[kind]
}

// TestBazelRemoteExecution builds and tests the C workspace (cc_library,
// cc_binary, cc_test, a genrule) with every action on one mound worker,
// cleans, and builds and tests again: the second time every action must be a
// remote cache hit. It does so with a worker whose inputs are FUSE and with
// one whose inputs are hardlinked, and the two must build the same bytes.
func TestBazelRemoteExecution(t *testing.T) {
	built := map[string]map[string]string{}
	for _, inputs := range []string{"fuse", "hardlink"} {
		t.Run(inputs, func(t *testing.T) { built[inputs] = bazelRemoteExecution(t, inputs) })
	}
	if t.Failed() {
		return
	}
	if len(built["fuse"]) == 0 {
		t.Fatal("no outputs found under bazel-bin")
	}
	for name, sum := range built["fuse"] {
		if other, ok := built["hardlink"][name]; !ok || other != sum {
			t.Errorf("bazel-bin/%s: sha256 %s with FUSE inputs, %q with hardlinked inputs", name, sum, other)
		}
	}
	for name := range built["hardlink"] {
		if _, ok := built["fuse"][name]; !ok {
			t.Errorf("bazel-bin/%s was built with hardlinked inputs only", name)
		}
	}
}

// builtOutputs returns the sha256 of every object, archive and program the
// build left under bazel-bin, by path.
func builtOutputs(t *testing.T, w *bazelWorkspace) map[string]string {
	t.Helper()
	bin, err := filepath.EvalSymlinks(filepath.Join(w.Dir, "bazel-bin"))
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	err = filepath.WalkDir(bin, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasSuffix(d.Name(), ".runfiles") {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(bin, p)
		if !d.Type().IsRegular() || !(strings.HasSuffix(p, ".o") || strings.HasSuffix(p, ".a") || rel == "app/calc" || strings.HasPrefix(rel, "banner/")) {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sums[rel] = fmt.Sprintf("%x", sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

func bazelRemoteExecution(t *testing.T, inputs string) map[string]string {
	m := startMound(t)
	startWorker(t, m, workerOptions{Name: "rex", Jobs: 2, Inputs: inputs})
	w := newBazelWorkspace(t, "cworkspace")
	flags := remoteExecutionFlags(m)

	start := time.Now()
	out := w.mustRun(t, append([]string{"build", "//..."}, flags...)...)
	s := mustParseProcessSummary(t, out)
	t.Logf("build (%v): %d processes %v", time.Since(start).Round(time.Millisecond), s.Total, s.ByKind)
	built := checkRanOnly(t, "build", s, "remote")
	if t.Failed() {
		t.Fatalf("Bazel's output:\n%s", out)
	}
	checkCalc(t, w)

	start = time.Now()
	out = w.mustRun(t, append([]string{"test", "//..."}, flags...)...)
	s = mustParseProcessSummary(t, out)
	t.Logf("test (%v): %d processes %v", time.Since(start).Round(time.Millisecond), s.Total, s.ByKind)
	// The test itself, and the action that writes its test.xml.
	tested := checkRanOnly(t, "test", s, "remote")
	if !regexp.MustCompile(`(?m)^//report:report_test\s+PASSED in `).MatchString(out) {
		t.Errorf("test: //report:report_test did not pass")
	}
	if t.Failed() {
		t.Fatalf("Bazel's output:\n%s", out)
	}

	w.mustRun(t, "clean")
	start = time.Now()
	out = w.mustRun(t, append([]string{"test", "//..."}, flags...)...)
	s = mustParseProcessSummary(t, out)
	t.Logf("test after clean (%v): %d processes %v", time.Since(start).Round(time.Millisecond), s.Total, s.ByKind)
	if hits := checkRanOnly(t, "test after clean", s, "remote cache hit"); hits != built+tested {
		t.Errorf("test after clean: %d remote cache hits, want %d (the %d build and %d test actions that ran remotely)", hits, built+tested, built, tested)
	}
	if !regexp.MustCompile(`(?m)^//report:report_test\s+\(cached\) PASSED in `).MatchString(out) {
		t.Errorf("test after clean: //report:report_test is not a cached pass")
	}
	if t.Failed() {
		t.Fatalf("Bazel's output:\n%s", out)
	}
	checkCalc(t, w)
	return builtOutputs(t, w)
}

// brokenCompileError is what gcc says of testdata/cworkspace/broken/broken.c.
// Actions run with no LANG, so gcc quotes with ASCII apostrophes.
var brokenCompileError = regexp.MustCompile(`(?m)^broken/broken\.c:3:\d+: error: expected ',' or ';' before 'return'$`)

// TestBazelRemoteCompileError builds a target that does not compile: the
// build must fail with the compiler's message, which reaches Bazel only as
// the remote action's stderr. A second build must run the compiler again,
// because a failed result is never cached.
func TestBazelRemoteCompileError(t *testing.T) {
	m := startMound(t)
	wk := startWorker(t, m, workerOptions{Name: "rex", Jobs: 2})
	w := newBazelWorkspace(t, "cworkspace")
	build := append([]string{"build", "//broken"}, remoteExecutionFlags(m)...)

	done := int64(0)
	for _, attempt := range []string{"first build", "second build"} {
		out, err := w.run(build...)
		if err == nil {
			t.Fatalf("%s of //broken succeeded; Bazel's output:\n%s", attempt, out)
		}
		if !strings.Contains(out, "Compiling broken/broken.c failed: (Exit 1)") || !brokenCompileError.MatchString(out) {
			t.Fatalf("%s: Bazel's output lacks the failed compile and gcc's message %q:\n%s", attempt, brokenCompileError, out)
		}
		// Bazel leaves a failed remote action out of its process summary:
		// the worker's count of finished tasks shows where it ran.
		info, err := m.Worker(wk.Name)
		if err != nil {
			t.Fatal(err)
		}
		if info.GetTasksDone() <= done {
			t.Errorf("%s: worker %s has finished %d tasks, as many as before the build (%d): the compile did not run on it", attempt, wk.Name, info.GetTasksDone(), done)
		}
		done = info.GetTasksDone()
	}
}

// serverDefaultTimeout is the --default-timeout of TestBazelRemoteTimeout's
// mound: short, for the genrule that sleeps, and long against the few
// milliseconds Bazel's other actions take.
const serverDefaultTimeout = 3 * time.Second

// TestBazelRemoteTimeout runs a test that sleeps 100 s with a 3 s test
// timeout, which Bazel sends as the Action's timeout: the worker must end
// the action, Bazel must report TIMEOUT long before the sleep would end,
// and the sleep must be gone from the host. Then a genrule that sleeps 100
// s, which sends no timeout, must end at the server's default timeout, with
// the output it wrote before.
func TestBazelRemoteTimeout(t *testing.T) {
	m := startMound(t, "--default-timeout="+serverDefaultTimeout.String())
	wk := startWorker(t, m, workerOptions{Name: "rex", Jobs: 2})
	w := newBazelWorkspace(t, "shworkspace")
	marker := uniqueMarker("mound-e2e-timeout")
	flags := append([]string{"--test_timeout=3", "--test_arg=" + marker}, remoteExecutionFlags(m)...)
	// Start Bazel's server and analyse first, so that the time measured
	// below is the test's.
	w.mustRun(t, append([]string{"build", "//timeout:sleeps"}, flags...)...)

	start := time.Now()
	out, err := w.run(append([]string{"test", "//timeout:sleeps"}, flags...)...)
	elapsed := time.Since(start)
	if err == nil {
		t.Fatalf("bazel test of a test that outlives its timeout succeeded; Bazel's output:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^//timeout:sleeps\s+TIMEOUT in `).MatchString(out) {
		t.Fatalf("Bazel did not report //timeout:sleeps as TIMEOUT:\n%s", out)
	}
	// The sleep lasts 100 s; 3 s of timeout and a few remote calls take
	// well under half a minute.
	if elapsed > 30*time.Second {
		t.Errorf("bazel test took %v: the action was not ended at its 3s timeout", elapsed.Round(time.Millisecond))
	}
	s := mustParseProcessSummary(t, out)
	t.Logf("test (%v): %d processes %v", elapsed.Round(time.Millisecond), s.Total, s.ByKind)
	checkRanOnly(t, "test", s, "remote")
	if left := processesWith(t, marker); len(left) > 0 {
		t.Errorf("processes of the timed-out action still run on the host: %v", left)
	}
	if t.Failed() {
		t.Fatalf("Bazel's output:\n%s", out)
	}

	start = time.Now()
	out, err = w.run(append([]string{"build", "//timeout:sleepy", "--define=marker=" + marker}, remoteExecutionFlags(m)...)...)
	elapsed = time.Since(start)
	if err == nil {
		t.Fatalf("bazel build of a genrule that outlives the server's default timeout succeeded; Bazel's output:\n%s", out)
	}
	if !strings.Contains(out, "Executing genrule //timeout:sleepy failed: (Timeout)") {
		t.Errorf("Bazel did not report the genrule as timed out")
	}
	if !regexp.MustCompile(`(?m)^started-` + regexp.QuoteMeta(marker) + `$`).MatchString(out) {
		t.Errorf("Bazel's output lacks what the genrule printed before its timeout, %q", "started-"+marker)
	}
	if elapsed > serverDefaultTimeout+30*time.Second {
		t.Errorf("bazel build took %v: the genrule was not ended at the server's %v default timeout", elapsed.Round(time.Millisecond), serverDefaultTimeout)
	}
	if left := processesWith(t, "mound-e2e-genrule-"+marker); len(left) > 0 {
		t.Errorf("processes of the timed-out genrule still run on the host: %v", left)
	}
	// The worker removes an action's directory before it reports the
	// result, timed out or not.
	if left := wk.ActionDirs(t); len(left) > 0 {
		t.Errorf("action directories left in worker %s after the builds: %v", wk.Name, left)
	}
	if t.Failed() {
		t.Logf("Bazel's output:\n%s", out)
	}
}
