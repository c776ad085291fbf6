package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mound-build/mound/scheduler/workerpb"
)

// binDir holds the binaries built by buildBinary; TestMain creates it and
// removes it after all tests, so each package is compiled once per run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mound-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// moduleRoot returns the directory holding go.mod, found by walking up from
// the test's working directory (go test runs tests in the package directory).
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's working directory")
		}
		dir = parent
	}
}

var built struct {
	sync.Mutex
	paths map[string]string // package path -> binary
}

// buildBinary compiles the main package pkg (relative to the module root,
// e.g. "./cmd/mound") once per test run and returns the binary's path.
func buildBinary(t *testing.T, pkg string) string {
	t.Helper()
	built.Lock()
	defer built.Unlock()
	if p, ok := built.paths[pkg]; ok {
		return p
	}
	out := filepath.Join(binDir, filepath.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = moduleRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	if built.paths == nil {
		built.paths = map[string]string{}
	}
	built.paths[pkg] = out
	return out
}

// mound is a running mound server process.
type mound struct {
	// GRPCAddr is the HOST:PORT of the REAPI endpoint; use it as
	// grpc://GRPCAddr.
	GRPCAddr string

	admin  workerpb.AdminClient // on GRPCAddr; set once mound serves
	cmd    *exec.Cmd
	stdout *lineWatcher
	stderr *lineWatcher
	exited chan struct{} // closed once cmd.Wait has returned; then wait is set
	wait   error
}

// Log returns what mound has printed so far, stdout then stderr.
func (m *mound) Log() string {
	return "stdout:\n" + m.stdout.String() + "stderr:\n" + m.stderr.String()
}

// startMound builds and starts mound on kernel-chosen ports with its data in
// a temporary directory and the flags args, waits until it prints its gRPC
// address, and stops it when the test ends. mound's output is logged if the
// test failed.
func startMound(t *testing.T, args ...string) *mound {
	t.Helper()
	bin := buildBinary(t, "./cmd/mound")
	m := &mound{
		stdout: newLineWatcher(regexp.MustCompile(`grpc://(\S+)`)),
		stderr: newLineWatcher(nil),
		exited: make(chan struct{}),
	}
	m.cmd = exec.Command(bin, append([]string{"--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data", t.TempDir()}, args...)...)
	m.cmd.Stdout = m.stdout
	m.cmd.Stderr = m.stderr
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start mound: %v", err)
	}
	// The owner of this goroutine is the cleanup below, which waits for
	// exited.
	go func() {
		m.wait = m.cmd.Wait()
		close(m.exited)
	}()
	t.Cleanup(func() { m.stop(t) })

	// Bounded in case mound hangs before listening; a healthy one prints
	// its address in milliseconds.
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	select {
	case addr := <-m.stdout.match:
		m.GRPCAddr = addr
	case <-m.exited:
		t.Fatalf("mound exited before serving: %v\n%s", m.wait, m.Log())
	case <-timeout.C:
		t.Fatalf("mound printed no grpc:// address within a minute:\n%s", m.Log())
	}
	conn, err := grpc.NewClient(m.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial mound's admin service: %v", err)
	}
	// Registered after stop, so it runs first: the connection closes
	// before the server does.
	t.Cleanup(func() { conn.Close() })
	m.admin = workerpb.NewAdminClient(conn)
	return m
}

// adminCallTimeout bounds one Admin RPC; mound answers from memory.
const adminCallTimeout = 10 * time.Second

// Workers lists the workers connected to mound's scheduler, as `mound admin
// workers` does.
func (m *mound) Workers() ([]*workerpb.WorkerInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), adminCallTimeout)
	defer cancel()
	resp, err := m.admin.ListWorkers(ctx, &workerpb.ListWorkersRequest{})
	if err != nil {
		return nil, fmt.Errorf("ListWorkers: %w", err)
	}
	return resp.GetWorkers(), nil
}

// errNoSuchWorker is Worker's answer when no worker of that name is
// connected.
var errNoSuchWorker = errors.New("no such worker connected")

// Worker returns what mound's scheduler knows of the worker called name, or
// errNoSuchWorker.
func (m *mound) Worker(name string) (*workerpb.WorkerInfo, error) {
	workers, err := m.Workers()
	if err != nil {
		return nil, err
	}
	for _, w := range workers {
		if w.GetName() == name {
			return w, nil
		}
	}
	return nil, fmt.Errorf("worker %q: %w", name, errNoSuchWorker)
}

// stop sends SIGTERM, which mound handles by shutting down gracefully, and
// kills it if it has not exited within a bound. Any exit other than 0 (or
// death by that SIGTERM, see killedBy) fails the test: it means the server
// failed while serving or shutting down.
func (m *mound) stop(t *testing.T) {
	select {
	case <-m.exited:
	default:
		m.cmd.Process.Signal(syscall.SIGTERM)
		timeout := time.NewTimer(30 * time.Second)
		defer timeout.Stop()
		select {
		case <-m.exited:
		case <-timeout.C:
			m.cmd.Process.Kill()
			<-m.exited
			t.Errorf("mound did not stop within 30s of SIGTERM; killed it")
		}
	}
	if m.wait != nil && !killedBy(m.wait, syscall.SIGTERM) {
		t.Errorf("mound exited with %v", m.wait)
	}
	if t.Failed() {
		t.Logf("mound output:\n%s", m.Log())
	}
}

// killedBy reports whether err is the exit of a process ended by sig. A
// SIGTERM that arrives before mound has installed its handler (a test failing
// right after startup) ends it this way, which is a clean stop, not a crash.
func killedBy(err error, sig syscall.Signal) bool {
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		return false
	}
	ws, ok := exitErr.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// lineWatcher is an io.Writer that keeps everything written to it and, if
// pattern is not nil, sends the first submatch of pattern on match the first
// time a complete line matches. Write and String are safe for concurrent use.
type lineWatcher struct {
	pattern *regexp.Regexp
	match   chan string // buffered; receives at most one value

	mu      sync.Mutex
	all     bytes.Buffer
	partial []byte // the current line, not yet ended by '\n'
	matched bool
}

func newLineWatcher(pattern *regexp.Regexp) *lineWatcher {
	return &lineWatcher{pattern: pattern, match: make(chan string, 1)}
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	if w.pattern == nil || w.matched {
		return len(p), nil
	}
	w.partial = append(w.partial, p...)
	for !w.matched {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		if m := w.pattern.FindSubmatch(w.partial[:i]); m != nil {
			w.matched = true
			w.partial = nil
			w.match <- string(m[1])
			break
		}
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

// String returns everything written so far.
func (w *lineWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}
