package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// bazelCommandTimeout bounds one Bazel command. The workspaces in testdata
// build in seconds; the bound is for a hung server or client.
const bazelCommandTimeout = 5 * time.Minute

// bazelWorkspace is a copy of a workspace from testdata/ with its own Bazel
// output root, so tests share neither files nor a Bazel server.
type bazelWorkspace struct {
	// Dir is the workspace root, where Bazel runs and bazel-bin points from.
	Dir string

	outputUserRoot string
}

// newBazelWorkspace copies testdata/<name> and the repository stand-ins into a
// temporary directory, writes the workspace's .bazelrc, and arranges for
// `bazel shutdown` when the test ends.
func newBazelWorkspace(t *testing.T, name string) *bazelWorkspace {
	t.Helper()
	if _, err := exec.LookPath("bazel"); err != nil {
		t.Fatalf("bazel not found (%v): run scripts/install-test-deps.sh to install Debian's bazel-bootstrap", err)
	}
	root := t.TempDir()
	w := &bazelWorkspace{
		Dir:            filepath.Join(root, "ws"),
		outputUserRoot: filepath.Join(root, "bazel"),
	}
	stubs := filepath.Join(root, "stubs")
	if err := os.CopyFS(stubs, os.DirFS(filepath.Join("testdata", "stubs"))); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(w.Dir, os.DirFS(filepath.Join("testdata", name))); err != nil {
		t.Fatal(err)
	}
	rc := fmt.Sprintf(`# Written by the e2e tests.
# Bazel 4 downloads rules_cc and rules_java for any C build, and
# remote_coverage_tools for any test rule; the tests run offline, so they get
# local stand-ins (forwarders to the native rules, and two tools that only
# coverage would run).
build --override_repository=rules_cc=%s
build --override_repository=rules_java=%s
build --override_repository=remote_coverage_tools=%s
# Debian's /etc/bazel/bazelrc turns on --sandbox_debug, which makes
# linux-sandbox write its mount log into every action's stderr.
build --nosandbox_debug
# Actions get a fixed PATH instead of the caller's, so action keys (and so
# cache hits) do not depend on the environment the test runs in.
build --incompatible_strict_action_env
`, filepath.Join(stubs, "rules_cc"), filepath.Join(stubs, "rules_java"), filepath.Join(stubs, "remote_coverage_tools"))
	if err := os.WriteFile(filepath.Join(w.Dir, ".bazelrc"), []byte(rc), 0o666); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if out, err := w.run("shutdown"); err != nil {
			t.Errorf("bazel shutdown: %v\n%s", err, out)
		}
		// Bazel leaves some outputs read-only; make them removable by the
		// TempDir cleanup even when the test does not run as root.
		filepath.WalkDir(w.outputUserRoot, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(path, 0o755)
			}
			return nil
		})
	})
	return w
}

// run runs one Bazel command in the workspace and returns its combined
// output, which is the only diagnosis Bazel gives.
func (w *bazelWorkspace) run(args ...string) (string, error) {
	return w.runContext(context.Background(), args...)
}

// runContext is run that also ends the command (killing the client, which
// makes the server cancel it) when ctx is done.
func (w *bazelWorkspace) runContext(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, bazelCommandTimeout)
	defer cancel()
	startup := []string{
		"--output_user_root=" + w.outputUserRoot,
		// The developer's ~/.bazelrc must not change what the test
		// checks. (Debian's system rc stays: it points Bazel at its
		// install base.)
		"--nohome_rc",
		// If the test dies before its cleanup runs `bazel shutdown`, the
		// server still goes away on its own.
		"--max_idle_secs=300",
	}
	cmd := exec.CommandContext(ctx, "bazel", append(startup, args...)...)
	cmd.Dir = w.Dir
	// The client returns when the command ends; WaitDelay covers a child
	// that would keep the output pipe open past that.
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (timeout %v)", err, bazelCommandTimeout)
	}
	return string(out), err
}

// mustRun is run that fails the test, with Bazel's full output, when the
// command fails.
func (w *bazelWorkspace) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := w.run(args...)
	if err != nil {
		t.Fatalf("bazel %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// processSummary is Bazel's summary of where a build's actions ran, as in
// "INFO: 31 processes: 14 internal, 17 linux-sandbox.".
type processSummary struct {
	Total int
	// ByKind counts processes per runner: "internal", "linux-sandbox",
	// "processwrapper-sandbox", "local", "remote", "remote cache hit", ...
	ByKind map[string]int
}

var (
	summaryLine = regexp.MustCompile(`(?m)^INFO: (\d+) process(?:es)?(?:: (.*?))?\.\s*$`)
	summaryKind = regexp.MustCompile(`^(\d+) (\S.*)$`)
)

// parseProcessSummary reads the last process summary line from Bazel's
// output.
func parseProcessSummary(output string) (processSummary, error) {
	lines := summaryLine.FindAllStringSubmatch(output, -1)
	if lines == nil {
		return processSummary{}, fmt.Errorf("no %q line in Bazel's output", "INFO: N processes")
	}
	m := lines[len(lines)-1]
	s := processSummary{ByKind: map[string]int{}}
	s.Total, _ = strconv.Atoi(m[1])
	sum := 0
	if m[2] != "" {
		for _, part := range strings.Split(m[2], ", ") {
			k := summaryKind.FindStringSubmatch(part)
			if k == nil {
				return processSummary{}, fmt.Errorf("summary %q: cannot parse %q", m[0], part)
			}
			n, _ := strconv.Atoi(k[1])
			s.ByKind[k[2]] += n
			sum += n
		}
	}
	if sum != s.Total {
		return processSummary{}, fmt.Errorf("summary %q: kinds add up to %d, not %d", m[0], sum, s.Total)
	}
	return s, nil
}

// mustParseProcessSummary is parseProcessSummary that fails the test with
// Bazel's output.
func mustParseProcessSummary(t *testing.T, output string) processSummary {
	t.Helper()
	s, err := parseProcessSummary(output)
	if err != nil {
		t.Fatalf("%v; Bazel's output:\n%s", err, output)
	}
	return s
}

func TestParseProcessSummary(t *testing.T) {
	for _, tc := range []struct {
		output  string
		want    processSummary
		wantErr bool
	}{
		{
			output: "INFO: Elapsed time: 4.843s, Critical Path: 0.51s\nINFO: 31 processes: 14 internal, 17 linux-sandbox.\nINFO: Build completed successfully, 31 total actions\n",
			want:   processSummary{31, map[string]int{"internal": 14, "linux-sandbox": 17}},
		},
		{
			output: "INFO: 405 processes: 2 internal, 403 remote cache hit.\n",
			want:   processSummary{405, map[string]int{"internal": 2, "remote cache hit": 403}},
		},
		{
			output: "INFO: 1 process: 1 internal.\n",
			want:   processSummary{1, map[string]int{"internal": 1}},
		},
		{
			output: "INFO: 0 processes.\n",
			want:   processSummary{0, map[string]int{}},
		},
		{
			// Two builds' output: the last summary counts.
			output: "INFO: 3 processes: 3 local.\nINFO: 2 processes: 1 internal, 1 remote.\n",
			want:   processSummary{2, map[string]int{"internal": 1, "remote": 1}},
		},
		{output: "INFO: Build completed successfully\n", wantErr: true},
		{output: "INFO: 5 processes: 2 internal, 2 remote.\n", wantErr: true},
		{output: "INFO: 5 processes: five internal.\n", wantErr: true},
	} {
		got, err := parseProcessSummary(tc.output)
		if tc.wantErr {
			if err == nil {
				t.Errorf("parseProcessSummary(%q) = %+v, want an error", tc.output, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseProcessSummary(%q): %v", tc.output, err)
			continue
		}
		if got.Total != tc.want.Total || !maps.Equal(got.ByKind, tc.want.ByKind) {
			t.Errorf("parseProcessSummary(%q) = %+v, want %+v", tc.output, got, tc.want)
		}
	}
}
