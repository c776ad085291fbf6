package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestSandboxThroughExecution builds, through Bazel and a mound worker,
// genrules that try to get out of the sandbox (testdata/shworkspace/sandbox):
// read the worker's directory, /root and a file elsewhere on the host,
// connect to a port the test listens on, write where it must not, and leave
// a process running. Every path is made readable by anyone, so only the
// sandbox stands in the way. It runs once with a worker that hardlinks
// inputs and once with one in the default input mode (FUSE where this
// machine can mount it in a sandbox).
func TestSandboxThroughExecution(t *testing.T) {
	m := startMound(t)
	secretDir := t.TempDir()
	secret := "secret-" + uniqueMarker("host-file")
	secretPath := filepath.Join(secretDir, "secret.txt")
	writeReadable(t, secretPath, secret)
	// t.TempDir makes its directories 0700.
	for _, d := range []string{secretDir, filepath.Dir(secretDir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var connections atomic.Int32
	accepted := make(chan struct{})
	// The owner of this goroutine is the cleanup below, which closes the
	// listener to end it and waits.
	go func() {
		defer close(accepted)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			connections.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		<-accepted
	})

	w := newBazelWorkspace(t, "shworkspace")
	for _, mode := range []string{"hardlink", "auto"} {
		t.Run(mode, func(t *testing.T) {
			// The worker's directory lies outside /tmp, so that the
			// sandbox's private /tmp alone would not hide it. Removed
			// after the worker has stopped (cleanups run last-registered
			// first). Each worker has its own, so the genrules, which
			// name it, are new actions for each.
			workerDir, err := os.MkdirTemp("/var/tmp", "mound-e2e-worker-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(workerDir) })
			if err := os.Chmod(workerDir, 0o755); err != nil {
				t.Fatal(err)
			}
			planted := "planted-" + uniqueMarker("worker-file")
			writeReadable(t, filepath.Join(workerDir, "planted.txt"), planted)
			wk := startWorker(t, m, workerOptions{Name: "sandbox-" + mode, Jobs: 2, Dir: workerDir, Inputs: mode})
			// The subtest's cleanup stops the worker before the next
			// mode's starts, so that each build runs on its own worker.
			fuse := strings.Contains(wk.Log(), `msg="inputs: fuse"`)
			t.Logf("worker %s: FUSE inputs: %v", wk.Name, fuse)
			checkSandbox(t, m, w, wk, fuse, sandboxSecrets{
				planted: planted, secret: secret, secretPath: secretPath,
				port: lis.Addr().(*net.TCPAddr).Port, connections: &connections,
			})
		})
	}
}

// sandboxSecrets are what the genrules of TestSandboxThroughExecution try
// to reach.
type sandboxSecrets struct {
	planted            string // content of planted.txt in the worker's directory
	secret, secretPath string // a file elsewhere on the host
	port               int    // the test's listener
	connections        *atomic.Int32
}

// checkSandbox builds the sandbox genrules on wk and checks that none of
// their probes got out. fuse says wk presents inputs through FUSE: writes
// anywhere in the exec root then go to the action's private layer (as the
// README says), and the test checks instead that they never reach the
// worker's blob cache.
func checkSandbox(t *testing.T, m *mound, w *bazelWorkspace, wk *worker, fuse bool, sec sandboxSecrets) {
	t.Helper()
	marker := uniqueMarker("sandbox")
	out := w.mustRun(t, append([]string{
		"build", "//sandbox:escape", "//sandbox:orphan",
		"--define=worker_dir=" + wk.Dir,
		"--define=secret=" + sec.secretPath,
		"--define=port=" + strconv.Itoa(sec.port),
		"--define=marker=" + marker,
	}, remoteExecutionFlags(m)...)...)
	s := mustParseProcessSummary(t, out)
	t.Logf("build: %d processes %v", s.Total, s.ByKind)
	checkRanOnly(t, "build", s, "remote")

	escape := readOutput(t, w, "sandbox/escape.txt")
	probes := map[string]string{} // probe name -> "ok: ..." or "failed: ..."
	for _, line := range strings.Split(escape, "\n") {
		if name, rest, ok := strings.Cut(line, ": "); ok && (strings.HasPrefix(rest, "ok: ") || strings.HasPrefix(rest, "failed: ")) {
			probes[name] = rest
		}
	}
	// The control: the probe works, and an action reads its own inputs.
	if got := probes["read-own-input"]; !strings.HasPrefix(got, "ok: The genrule's own input") {
		t.Errorf("read-own-input: %q, want the input file's text", got)
	}
	// The host's /usr and /etc are mounted read-only in the sandbox.
	if got := probes["system-dirs-read-only"]; !strings.HasPrefix(got, "ok: ") {
		t.Errorf("system-dirs-read-only: %q, want /usr and /etc mounted ro", got)
	}
	mustFail := []string{"list-worker-dir", "read-worker-file", "list-root", "read-secret", "connect-host",
		"run-as-root", "write-system-dir"}
	if !fuse {
		// Hardlinked inputs share their inode with the blob cache: the
		// exec root is writable only where outputs go.
		mustFail = append(mustFail, "write-own-input", "chmod-and-write-input", "write-exec-root")
	}
	for _, name := range mustFail {
		if got, ok := probes[name]; !ok {
			t.Errorf("%s: no result", name)
		} else if !strings.HasPrefix(got, "failed: ") {
			t.Errorf("%s: the action succeeded: %q", name, got)
		}
	}
	for _, leak := range []string{sec.planted, sec.secret} {
		if strings.Contains(escape, leak) {
			t.Errorf("the action read %q", leak)
		}
	}
	if n := sec.connections.Load(); n != 0 {
		t.Errorf("the action connected to the test's listener on the host %d times", n)
	}
	// Whatever the action could write, the worker's copy of its input is
	// what the CAS holds.
	filepath.WalkDir(filepath.Join(wk.Dir, "cache"), func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), "tampered") {
			t.Errorf("the action changed the worker's cached blob %s: %q", p, b)
		}
		return nil
	})

	// The orphan was running when its action ended; by the time Bazel has
	// the result, it must be gone.
	if got := readOutput(t, w, "sandbox/orphan.txt"); got != "running\n" {
		t.Errorf("orphan.txt = %q, want %q: the genrule could not start its background process, so the check below means nothing", got, "running\n")
	}
	if left := processesWith(t, "mound-e2e-orphan-"+marker); len(left) > 0 {
		t.Errorf("a process the action left behind still runs on the host: %v", left)
	}
	if t.Failed() {
		t.Logf("escape.txt:\n%s\nBazel's output:\n%s", escape, out)
	}
}

// writeReadable writes content to path, readable by anyone.
func writeReadable(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode passes through the umask.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readOutput returns the content of a file Bazel built, by its path under
// bazel-bin.
func readOutput(t *testing.T, w *bazelWorkspace, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(w.Dir, "bazel-bin", path))
	if err != nil {
		t.Fatalf("output %s: %v", path, err)
	}
	return string(b)
}

// TestSandboxNetworkOn builds a genrule that connects to the host with the
// platform property network=on, on a worker that offers that platform: the
// action keeps the host's network, so the test's listener sees it connect.
// (TestSandboxThroughExecution checks that without it the connection
// fails.)
func TestSandboxNetworkOn(t *testing.T) {
	m := startMound(t)
	startWorker(t, m, workerOptions{Name: "networked", Jobs: 1, Platform: "network=on"})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 1)
	done := make(chan struct{})
	// The owner of this goroutine is the cleanup below, which closes the
	// listener to end it and waits.
	go func() {
		defer close(done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Close()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		<-done
	})

	w := newBazelWorkspace(t, "shworkspace")
	out := w.mustRun(t, append([]string{
		"build", "//sandbox:connect",
		"--remote_default_exec_properties=network=on",
		"--define=port=" + strconv.Itoa(lis.Addr().(*net.TCPAddr).Port),
	}, remoteExecutionFlags(m)...)...)
	s := mustParseProcessSummary(t, out)
	checkRanOnly(t, "build", s, "remote")
	if got := readOutput(t, w, "sandbox/connect.txt"); got != "connected\n" {
		t.Errorf("connect.txt = %q, want %q: an action with network=on could not reach the host", got, "connected\n")
	}
	// The connection is complete in the kernel when the action ends; the
	// accept loop may take a moment more to see it.
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Errorf("the test's listener saw no connection from the network=on action")
	}
	if t.Failed() {
		t.Logf("Bazel's output:\n%s", out)
	}
}
