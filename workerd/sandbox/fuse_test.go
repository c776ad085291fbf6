//go:build linux

package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// loopback is a FUSE exec root for Spec.FUSE: each sandbox gets its own
// go-fuse server, in this process, mirroring the directory dir.
type loopback struct {
	dir string

	mu     sync.Mutex
	served []chan struct{} // one per server, closed when its Serve returns; guarded by mu
}

// newLoopback returns a loopback of a new directory. The test's cleanup
// checks that every server it started has ended.
func newLoopback(tb testing.TB) *loopback {
	tb.Helper()
	if err := sandboxOK(); err != nil {
		tb.Fatalf("this machine cannot run sandboxes: %v", err)
	}
	dir := tb.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	l := &loopback{dir: dir}
	tb.Cleanup(func() {
		if err := l.ended(); err != nil {
			tb.Error(err)
		}
	})
	return l
}

// serve is the Spec.FUSE function. go-fuse takes the descriptor of a
// "/dev/fd/N" mount point for its own and closes it when Serve ends, and
// Run closes dev: the server gets a duplicate.
func (l *loopback) serve(dev *os.File) error {
	root, err := fs.NewLoopbackRoot(l.dir)
	if err != nil {
		return err
	}
	fd, err := unix.FcntlInt(dev.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	// NewServer answers the kernel's INIT; it closes fd if it fails.
	server, err := fuse.NewServer(fs.NewNodeFS(root, &fs.Options{}), fmt.Sprintf("/dev/fd/%d", fd), &fuse.MountOptions{})
	if err != nil {
		return err
	}
	done := make(chan struct{})
	l.mu.Lock()
	l.served = append(l.served, done)
	l.mu.Unlock()
	go func() {
		defer close(done)
		server.Serve()
	}()
	return nil
}

// ended reports an error unless every server started so far has ended,
// waiting at most runBound for them.
func (l *loopback) ended() error {
	l.mu.Lock()
	served := l.served
	l.mu.Unlock()
	bound := time.NewTimer(runBound)
	defer bound.Stop()
	for i, done := range served {
		select {
		case <-done:
		case <-bound.C:
			return fmt.Errorf("FUSE server %d of %d still serves after its sandbox ended", i+1, len(served))
		}
	}
	return nil
}

// servers returns how many servers have been started.
func (l *loopback) servers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.served)
}

// noFUSEMountOnHost fails the test if this process's mount namespace (the
// host's) has a mount of the sandbox's FUSE type.
func noFUSEMountOnHost(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, " - "+fuseType+" ") {
			t.Errorf("a sandbox's FUSE mount is on the host: %s", line)
		}
	}
}

func TestFUSEExecRoot(t *testing.T) {
	t.Parallel()
	l := newLoopback(t)
	writeFile(t, l.dir, "hello", "world", 0o644)
	writeFile(t, l.dir, "sub/dir/script.sh", "#!/bin/sh\necho script in \"$(pwd -P)\"\n", 0o755)
	writeFile(t, l.dir, "bin/tool", "#!/bin/sh\necho tool \"$@\"\n", 0o755)
	// The loopback reports the ids of its files as they are on disk, and
	// the kernel reads them as ids of the sandbox, where only InsideUID
	// and InsideGID exist: it refuses writes to anything else, such as
	// the root-owned exec root.
	out := filepath.Join(l.dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(out, InsideUID, InsideGID); err != nil {
		t.Fatal(err)
	}

	o := mustRun(t, Spec{FUSE: l.serve, Args: []string{"cat", "hello"}})
	if o.stdout != "world" {
		t.Errorf("cat hello: stdout %q, want %q", o.stdout, "world")
	}

	o = mustRun(t, Spec{FUSE: l.serve, Args: bash(`
		echo made > out/made
		touch x 2>/dev/null && echo wrote into a directory of unmapped ids
		grep -c ' - ` + fuseType + ` ' /proc/self/mountinfo
		pwd -P
	`)})
	if want := "1\n/execroot\n"; o.stdout != want {
		t.Errorf("stdout %q, want %q", o.stdout, want)
	}
	if got := readFile(t, filepath.Join(l.dir, "out/made")); got != "made\n" {
		t.Errorf("out/made in the served directory = %q, want %q", got, "made\n")
	}

	// A working directory and a program inside the mount, found by PATH
	// too, at another mount path.
	o = mustRun(t, Spec{FUSE: l.serve, MountPath: "/src/ws", WorkDir: "sub", Args: bash("dir/script.sh; tool x"), Env: []string{"PATH=/src/ws/bin:/usr/bin:/bin"}})
	if want := "script in /src/ws/sub\ntool x\n"; o.stdout != want {
		t.Errorf("stdout %q, want %q", o.stdout, want)
	}
	o = runSpec(t, context.Background(), Spec{FUSE: l.serve, WorkDir: "missing", Args: []string{"/bin/true"}})
	if !errors.Is(o.err, ErrStart) {
		t.Errorf("missing working directory: Run = %+v, %v; want ErrStart", o.res, o.err)
	}

	if err := l.ended(); err != nil {
		t.Error(err)
	}
	if n := l.servers(); n != 4 {
		t.Errorf("%d FUSE servers started for 4 runs", n)
	}
	noFUSEMountOnHost(t)
}

// TestFUSEContextCancel kills a sandbox whose command is running from its
// FUSE exec root: Run must return, and the server end.
func TestFUSEContextCancel(t *testing.T) {
	t.Parallel()
	l := newLoopback(t)
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdoutR.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type ran struct {
		res Result
		err error
	}
	done := make(chan ran, 1)
	go func() {
		var o ran
		o.res, o.err = Run(ctx, Spec{FUSE: l.serve, Args: bash("echo ready; exec sleep 876560"), Stdout: stdoutW, UID: testUID, GID: testGID})
		stdoutW.Close() // unblocks the read below if the command never got there
		done <- o
	}()
	if err := stdoutR.SetReadDeadline(time.Now().Add(runBound)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdoutR).ReadString('\n')
	if line != "ready\n" {
		o := <-done
		t.Fatalf("reading the command's output: %q, %v; Run: %+v, %v", line, err, o.res, o.err)
	}
	cancel()
	o := <-done
	if !errors.Is(o.err, context.Canceled) || !o.res.TimedOut {
		t.Errorf("Run = %+v, %v; want TimedOut and context.Canceled", o.res, o.err)
	}
	if err := l.ended(); err != nil {
		t.Error(err)
	}
	noHostProcess(t, "sleep", "876560")
	noFUSEMountOnHost(t)
}

func TestFUSEServeFails(t *testing.T) {
	t.Parallel()
	if err := sandboxOK(); err != nil {
		t.Fatalf("this machine cannot run sandboxes: %v", err)
	}
	failure := errors.New("no file system today")
	called := false
	o := runSpec(t, context.Background(), Spec{
		FUSE: func(*os.File) error { called = true; return failure },
		Args: bash("echo started"),
	})
	if !errors.Is(o.err, failure) || errors.Is(o.err, ErrStart) || o.stdout != "" || !called {
		t.Errorf("Run with a failing FUSE = %+v, %v, stdout %q; want its error", o.res, o.err, o.stdout)
	}
}

func TestFUSESpec(t *testing.T) {
	t.Parallel()
	serve := func(*os.File) error { return nil }
	spec := Spec{FUSE: serve, Args: []string{"/bin/true"}, UID: testUID, GID: testGID}
	if err := spec.Validate(); err != nil {
		t.Errorf("FUSE without an exec root: %v", err)
	}
	spec.ExecRoot = t.TempDir()
	if err := spec.Validate(); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("FUSE and an exec root: %v, want ErrInvalidSpec", err)
	}
}

// TestFUSEWhileForking runs FUSE sandboxes whose commands keep reading their
// exec roots while this process, their server, forks further sandboxes'
// inits, with a single P: the fork/exec hazard of FUSE servers must not
// deadlock it (see fuse_linux.go).
func TestFUSEWhileForking(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	l := newLoopback(t)
	writeFile(t, l.dir, "hello", "world", 0o644)
	const n = 4
	var wg sync.WaitGroup
	outs := make([]outcome, 2*n)
	for i := range n {
		wg.Go(func() {
			outs[i] = runSpec(t, context.Background(), Spec{FUSE: l.serve, Args: bash(`for i in $(seq 100); do cat hello >/dev/null; ls >/dev/null; done; cat hello`)})
		})
		wg.Go(func() {
			outs[n+i] = runSpec(t, context.Background(), Spec{Args: []string{"/bin/echo", "world"}})
		})
	}
	wg.Wait()
	for i, o := range outs {
		if o.err != nil || o.res.ExitCode != 0 || strings.TrimSpace(o.stdout) != "world" {
			t.Errorf("run %d: %+v, %v, stdout %q, stderr %q", i, o.res, o.err, o.stdout, o.stderr)
		}
	}
	if err := l.ended(); err != nil {
		t.Error(err)
	}
	noFUSEMountOnHost(t)
}

// BenchmarkRunTrueFUSE is BenchmarkRunTrue with a FUSE exec root: the
// difference is what mounting and serving it costs, server start included.
func BenchmarkRunTrueFUSE(b *testing.B) {
	l := newLoopback(b)
	spec := Spec{FUSE: l.serve, Args: []string{"/bin/true"}, UID: testUID, GID: testGID}
	for b.Loop() {
		if res, err := Run(context.Background(), spec); err != nil || res.ExitCode != 0 {
			b.Fatalf("Run(true) = %+v, %v", res, err)
		}
	}
}
