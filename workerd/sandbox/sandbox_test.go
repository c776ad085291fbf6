//go:build linux

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The host ids sandboxed commands run as in these tests: Debian's nobody and
// nogroup.
const testUID, testGID = 65534, 65534

// runBound bounds every sandbox a test starts, so that a hung sandbox fails
// the test instead of hanging it.
const runBound = 60 * time.Second

// helperEnv makes the test binary act as a worker that runs one endless
// sandbox (TestWorkerDeathKillsSandbox).
const helperEnv = "MOUND_SANDBOX_TEST_HELPER"

func TestMain(m *testing.M) {
	RunInitIfRequested()
	if root := os.Getenv(helperEnv); root != "" {
		os.Exit(helperMain(root))
	}
	os.Exit(m.Run())
}

var sandboxOK = sync.OnceValue(Available)

// newExecRoot returns an empty exec root as the worker prepares one:
// root-owned, mode 0755.
func newExecRoot(t *testing.T) string {
	t.Helper()
	if err := sandboxOK(); err != nil {
		t.Fatalf("this machine cannot run sandboxes: %v", err)
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeFile creates name under root with content and mode, owned by root.
func writeFile(t *testing.T, root, name, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// bash returns the arguments that run script with bash, args as $1, $2...
func bash(script string, args ...string) []string {
	return append([]string{"/bin/bash", "-c", script, "bash"}, args...)
}

// outcome is what one Run produced.
type outcome struct {
	res            Result
	err            error
	stdout, stderr string
}

// runSpec runs spec with output files outside its exec root, filling in an
// exec root (unless spec has FUSE) and the test ids when spec has none.
func runSpec(t *testing.T, ctx context.Context, spec Spec) outcome {
	t.Helper()
	if spec.ExecRoot == "" && spec.FUSE == nil {
		spec.ExecRoot = newExecRoot(t)
	}
	if spec.UID == 0 {
		spec.UID, spec.GID = testUID, testGID
	}
	outDir := t.TempDir()
	stdout, err := os.Create(filepath.Join(outDir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(outDir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	spec.Stdout, spec.Stderr = stdout, stderr
	ctx, cancel := context.WithTimeout(ctx, runBound)
	defer cancel()
	var o outcome
	o.res, o.err = Run(ctx, spec)
	o.stdout = readFile(t, stdout.Name())
	o.stderr = readFile(t, stderr.Name())
	return o
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// mustRun runs spec and fails the test unless the command ran and exited 0.
func mustRun(t *testing.T, spec Spec) outcome {
	t.Helper()
	o := runSpec(t, context.Background(), spec)
	if o.err != nil || o.res.ExitCode != 0 {
		t.Fatalf("Run(%q) = %+v, %v; stdout:\n%s\nstderr:\n%s", spec.Args, o.res, o.err, o.stdout, o.stderr)
	}
	return o
}

// hostProcesses returns the host pids whose command line is exactly args.
func hostProcesses(t *testing.T, args ...string) []string {
	t.Helper()
	want := strings.Join(args, "\x00") + "\x00"
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && string(b) == want {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

func noHostProcess(t *testing.T, args ...string) {
	t.Helper()
	if pids := hostProcesses(t, args...); len(pids) > 0 {
		t.Errorf("process %q survived the sandbox on the host: pids %v", args, pids)
	}
}

func TestAvailable(t *testing.T) {
	if err := Available(); err != nil {
		t.Fatalf("Available() = %v", err)
	}
	if err := AvailableFUSE(); err != nil {
		t.Fatalf("AvailableFUSE() = %v", err)
	}
	noFUSEMountOnHost(t)
}

func TestOutputAndExitStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, script   string
		stdout, stderr string
		code           int
		signal         string
	}{
		{name: "output", script: "echo out; echo err >&2", stdout: "out\n", stderr: "err\n"},
		{name: "exit3", script: "echo partial; exit 3", stdout: "partial\n", code: 3},
		{name: "exit127", script: "exit 127", code: 127},
		{name: "signal", script: "kill -SEGV $$", code: 128 + 11, signal: "SIGSEGV"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := runSpec(t, context.Background(), Spec{Args: bash(tc.script)})
			if o.err != nil {
				t.Fatalf("Run: %v", o.err)
			}
			if o.res.ExitCode != tc.code || o.res.Signal != tc.signal || o.res.TimedOut {
				t.Errorf("Result = %+v, want exit code %d, signal %q", o.res, tc.code, tc.signal)
			}
			if o.stdout != tc.stdout || o.stderr != tc.stderr {
				t.Errorf("stdout %q, stderr %q; want %q, %q", o.stdout, o.stderr, tc.stdout, tc.stderr)
			}
		})
	}
}

func TestNilOutputDiscards(t *testing.T) {
	t.Parallel()
	res, err := Run(context.Background(), Spec{ExecRoot: newExecRoot(t), Args: bash("echo out; echo err >&2; exit 4"), UID: testUID, GID: testGID})
	if err != nil || res.ExitCode != 4 {
		t.Errorf("Run with no output files = %+v, %v; want exit code 4", res, err)
	}
}

func TestEnvironmentIsExactlySpecEnv(t *testing.T) {
	t.Parallel()
	env := []string{"A=1", "B=two words", "EMPTY="}
	o := mustRun(t, Spec{Args: []string{"/usr/bin/env"}, Env: env})
	if want := strings.Join(env, "\n") + "\n"; o.stdout != want {
		t.Errorf("environment:\n%s\nwant:\n%s", o.stdout, want)
	}
	o = mustRun(t, Spec{Args: []string{"/usr/bin/env"}})
	if o.stdout != "" {
		t.Errorf("environment with no Env:\n%s\nwant none", o.stdout)
	}
}

func TestBytesPassThrough(t *testing.T) {
	t.Parallel()
	// Not UTF-8: arguments and environment are bytes.
	const odd = "caf\xe9 \xff\xfe"
	o := mustRun(t, Spec{Args: bash(`printf '%s|%s' "$1" "$V"`, odd), Env: []string{"V=" + odd}})
	if want := odd + "|" + odd; o.stdout != want {
		t.Errorf("stdout %q, want %q", o.stdout, want)
	}
}

func TestSetupFailureIsAnError(t *testing.T) {
	t.Parallel()
	// Past Validate, as if the exec root vanished before the init opened
	// it: the init's setup fails, which must not read as exit code 127.
	spec := Spec{ExecRoot: newExecRoot(t), Args: []string{"/bin/true"}, UID: testUID, GID: testGID}
	cfg := spec.initConfig()
	cfg.ExecRoot = filepath.Join(spec.ExecRoot, "vanished")
	res, err := run(context.Background(), &spec, cfg)
	if err == nil || errors.Is(err, ErrStart) || errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "vanished") {
		t.Errorf("Run with a missing exec root = %+v, %v; want a setup error naming it", res, err)
	}
}

func TestArgs0Lookup(t *testing.T) {
	t.Parallel()
	root := newExecRoot(t)
	writeFile(t, root, "bin/tool", "#!/bin/sh\necho tool \"$@\"\n", 0o755)
	writeFile(t, root, "noexec/tool", "#!/bin/sh\necho wrong tool\n", 0o644)
	writeFile(t, root, "sub/dir/script.sh", "#!/bin/sh\necho script in \"$(pwd)\"\n", 0o755)
	for _, tc := range []struct {
		name    string
		workDir string
		args    []string
		env     []string
		stdout  string
	}{
		{name: "path", args: []string{"env"}, env: []string{"PATH=/nonexistent:/usr/bin"}, stdout: "PATH=/nonexistent:/usr/bin\n"},
		{name: "default path", args: []string{"echo", "hi"}, stdout: "hi\n"},
		{name: "exec root in path", args: []string{"tool", "x"}, env: []string{"PATH=/execroot/noexec:/execroot/bin"}, stdout: "tool x\n"},
		{name: "relative path entry", args: []string{"tool", "y"}, env: []string{"PATH=bin"}, stdout: "tool y\n"},
		{name: "relative with slash", workDir: "sub", args: []string{"dir/script.sh"}, stdout: "script in /execroot/sub\n"},
		{name: "dot slash", workDir: "sub/dir", args: []string{"./script.sh"}, stdout: "script in /execroot/sub/dir\n"},
		{name: "absolute", args: []string{"/execroot/bin/tool", "z"}, stdout: "tool z\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := mustRun(t, Spec{ExecRoot: root, WorkDir: tc.workDir, Args: tc.args, Env: tc.env})
			if o.stdout != tc.stdout {
				t.Errorf("stdout %q, want %q", o.stdout, tc.stdout)
			}
		})
	}
	for _, args := range [][]string{{"no-such-tool"}, {"./no-such-tool"}, {"/execroot/noexec/tool"}} {
		o := runSpec(t, context.Background(), Spec{ExecRoot: root, Args: args, Env: []string{"PATH=/usr/bin:/execroot/noexec"}})
		if !errors.Is(o.err, ErrStart) {
			t.Errorf("Run(%q) = %+v, %v; want ErrStart", args, o.res, o.err)
		}
	}
}

func TestWorkingDirectory(t *testing.T) {
	t.Parallel()
	root := newExecRoot(t)
	if err := os.MkdirAll(filepath.Join(root, "a/b"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, root, "file", "", 0o644)
	for _, tc := range []struct{ workDir, mountPath, want string }{
		{"", "", "/execroot\n"},
		{"a/b", "", "/execroot/a/b\n"},
		{"a/b", "/src/workspace", "/src/workspace/a/b\n"},
	} {
		o := mustRun(t, Spec{ExecRoot: root, WorkDir: tc.workDir, MountPath: tc.mountPath, Args: []string{"/bin/pwd", "-P"}})
		if o.stdout != tc.want {
			t.Errorf("pwd in %q at %q = %q, want %q", tc.workDir, tc.mountPath, o.stdout, tc.want)
		}
	}
	for _, wd := range []string{"missing", "file"} {
		o := runSpec(t, context.Background(), Spec{ExecRoot: root, WorkDir: wd, Args: []string{"/bin/true"}})
		if !errors.Is(o.err, ErrStart) {
			t.Errorf("working directory %q: Run = %+v, %v; want ErrStart", wd, o.res, o.err)
		}
	}
}

func TestInvalidSpec(t *testing.T) {
	t.Parallel()
	root := newExecRoot(t)
	valid := Spec{ExecRoot: root, Args: []string{"/bin/true"}, UID: testUID, GID: testGID}
	if err := valid.Validate(); err != nil {
		t.Fatalf("valid spec: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Spec)
	}{
		{"no args", func(s *Spec) { s.Args = nil }},
		{"empty args0", func(s *Spec) { s.Args = []string{""} }},
		{"NUL in arg", func(s *Spec) { s.Args = []string{"/bin/true", "a\x00b"} }},
		{"env without =", func(s *Spec) { s.Env = []string{"NOVALUE"} }},
		{"env without name", func(s *Spec) { s.Env = []string{"=x"} }},
		{"root uid", func(s *Spec) { s.UID = 0 }},
		{"root gid", func(s *Spec) { s.GID = 0 }},
		{"negative uid", func(s *Spec) { s.UID = -1 }},
		{"relative exec root", func(s *Spec) { s.ExecRoot = "execroot" }},
		{"host root as exec root", func(s *Spec) { s.ExecRoot = "/" }},
		{"missing exec root", func(s *Spec) { s.ExecRoot = filepath.Join(root, "missing") }},
		{"workdir escapes", func(s *Spec) { s.WorkDir = "../x" }},
		{"workdir dotdot", func(s *Spec) { s.WorkDir = "a/../../x" }},
		{"absolute workdir", func(s *Spec) { s.WorkDir = "/etc" }},
		{"mount at root", func(s *Spec) { s.MountPath = "/" }},
		{"relative mount", func(s *Spec) { s.MountPath = "execroot" }},
		{"unclean mount", func(s *Spec) { s.MountPath = "/a/../b" }},
		{"mount in usr", func(s *Spec) { s.MountPath = "/usr/src" }},
		{"mount on tmp", func(s *Spec) { s.MountPath = "/tmp" }},
		{"mount in proc", func(s *Spec) { s.MountPath = "/proc/x" }},
		{"negative timeout", func(s *Spec) { s.Timeout = -time.Second }},
	} {
		s := valid
		tc.change(&s)
		if _, err := Run(context.Background(), s); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: Run = %v, want ErrInvalidSpec", tc.name, err)
		}
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	var hard syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &hard); err != nil {
		t.Fatal(err)
	}
	show := bash("ulimit -n; ulimit -u; ulimit -f; ulimit -c")
	o := mustRun(t, Spec{Args: show})
	want := fmt.Sprintf("%d\n%d\n%d\n0\n", min(defaultOpenFiles, hard.Max), defaultProcesses, defaultFileSize/1024)
	if o.stdout != want {
		t.Errorf("default limits:\n%s\nwant:\n%s", o.stdout, want)
	}
	limits := Limits{OpenFiles: 64, Processes: 100, FileSize: 4096}
	o = mustRun(t, Spec{Args: show, Limits: limits})
	if want := "64\n100\n4\n0\n"; o.stdout != want {
		t.Errorf("limits %+v:\n%s\nwant:\n%s", limits, o.stdout, want)
	}
	o = runSpec(t, context.Background(), Spec{Args: bash("exec head -c 10000 /dev/zero > /tmp/big"), Limits: limits})
	if o.err != nil || o.res.Signal != "SIGXFSZ" {
		t.Errorf("writing past FileSize: %+v, %v; want killed by SIGXFSZ", o.res, o.err)
	}
}

func TestResourceUsage(t *testing.T) {
	t.Parallel()
	const size = 64 << 20
	o := mustRun(t, Spec{Args: []string{"/usr/bin/python3", "-c", fmt.Sprintf("b = b'x' * %d", size)}})
	if o.res.MaxRSS < size || o.res.MaxRSS > 16*size {
		t.Errorf("MaxRSS = %d for a %d-byte allocation", o.res.MaxRSS, size)
	}
	if o.res.WallTime <= 0 || o.res.UserTime+o.res.SystemTime <= 0 {
		t.Errorf("times: %+v", o.res)
	}
}

func TestConcurrentRuns(t *testing.T) {
	t.Parallel()
	const n = 8
	var wg sync.WaitGroup
	outs := make([]outcome, n)
	for i := range n {
		wg.Go(func() {
			outs[i] = runSpec(t, context.Background(), Spec{Args: []string{"/bin/echo", fmt.Sprint(i)}})
		})
	}
	wg.Wait()
	for i, o := range outs {
		if o.err != nil || o.res.ExitCode != 0 || o.stdout != fmt.Sprintf("%d\n", i) {
			t.Errorf("run %d: %+v, %v, stdout %q", i, o.res, o.err, o.stdout)
		}
	}
}

// TestRunTrueOverhead measures what a sandbox costs: Run's wall time for
// /bin/true, whose own run time is negligible.
func TestRunTrueOverhead(t *testing.T) {
	root := newExecRoot(t)
	const runs = 50
	times := make([]time.Duration, runs)
	for i := range times {
		start := time.Now()
		res, err := Run(context.Background(), Spec{ExecRoot: root, Args: []string{"/bin/true"}, UID: testUID, GID: testGID})
		times[i] = time.Since(start)
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("Run(true) = %+v, %v", res, err)
		}
	}
	slices.Sort(times)
	p50, p90 := times[runs/2], times[runs*9/10]
	t.Logf("Run(/bin/true) over %d runs: min %v, p50 %v, p90 %v, max %v", runs, times[0], p50, p90, times[runs-1])
	// A sanity bound only; the aim is a few milliseconds.
	if p50 > time.Second {
		t.Errorf("p50 %v", p50)
	}
}

func BenchmarkRunTrue(b *testing.B) {
	if err := sandboxOK(); err != nil {
		b.Fatal(err)
	}
	root := b.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		b.Fatal(err)
	}
	spec := Spec{ExecRoot: root, Args: []string{"/bin/true"}, UID: testUID, GID: testGID}
	for b.Loop() {
		if res, err := Run(context.Background(), spec); err != nil || res.ExitCode != 0 {
			b.Fatalf("Run(true) = %+v, %v", res, err)
		}
	}
}
