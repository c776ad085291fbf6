//go:build linux

package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fuseHelperPrefix makes helperMain serve the exec root over FUSE.
const fuseHelperPrefix = "fuse:"

// helperMain runs a sandbox that prints "ready" to this process's stdout and
// then sleeps until killed. Its exec root is the directory execRoot, or,
// after fuseHelperPrefix, that directory served by this process over FUSE.
func helperMain(execRoot string) int {
	spec := Spec{
		ExecRoot: execRoot,
		Args:     []string{"/bin/bash", "-c", "echo ready; exec sleep 876549"},
		Stdout:   os.Stdout,
		Stderr:   os.Stderr,
		UID:      testUID,
		GID:      testGID,
	}
	if dir, ok := strings.CutPrefix(execRoot, fuseHelperPrefix); ok {
		l := &loopback{dir: dir}
		spec.ExecRoot, spec.FUSE = "", l.serve
	}
	_, err := Run(context.Background(), spec)
	fmt.Fprintln(os.Stderr, "helper: Run returned:", err)
	return 1
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	start := time.Now()
	o := runSpec(t, context.Background(), Spec{
		Timeout: time.Second,
		Args:    bash("echo partial; echo partial err >&2; sleep 876543 & exec sleep 876544"),
	})
	if o.err != nil {
		t.Fatalf("Run: %v", o.err)
	}
	if !o.res.TimedOut || o.res.Signal != "SIGKILL" {
		t.Errorf("Result = %+v, want timed out", o.res)
	}
	if o.stdout != "partial\n" || o.stderr != "partial err\n" {
		t.Errorf("stdout %q, stderr %q; want the partial output", o.stdout, o.stderr)
	}
	if d := time.Since(start); d > runBound/2 {
		t.Errorf("a 1s timeout took %v", d)
	}
	noHostProcess(t, "sleep", "876543")
	noHostProcess(t, "sleep", "876544")
}

func TestBackgroundProcessesDie(t *testing.T) {
	t.Parallel()
	o := mustRun(t, Spec{Args: bash(`
		sleep 876545 &
		(sleep 876546 &)
		setsid sleep 876547 &
		nohup sleep 876548 >/dev/null 2>&1 &
		echo started
	`)})
	if o.stdout != "started\n" {
		t.Errorf("stdout %q", o.stdout)
	}
	for _, arg := range []string{"876545", "876546", "876547", "876548"} {
		noHostProcess(t, "sleep", arg)
	}
}

// openFIFO makes a FIFO the sandboxed command can write, and opens it for
// reading without blocking: the test's own write side keeps reads waiting
// for data instead of seeing end of file before the command opens it.
func openFIFO(t *testing.T, root, name string) *os.File {
	t.Helper()
	p := filepath.Join(root, name)
	if err := unix.Mkfifo(p, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o666); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestContextCancel(t *testing.T) {
	t.Parallel()
	root := newExecRoot(t)
	fifo := openFIFO(t, root, "fifo")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan outcome, 1)
	go func() {
		o := runSpec(t, ctx, Spec{ExecRoot: root, Args: bash("echo partial; echo ready > fifo; exec sleep 876550")})
		fifo.Close() // unblocks the read below if the sandbox never got there
		done <- o
	}()
	if err := fifo.SetReadDeadline(time.Now().Add(runBound)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(fifo).ReadString('\n')
	if line != "ready\n" {
		o := <-done
		t.Fatalf("reading the command's FIFO: %q, %v; Run: %+v, %v, stderr %q", line, err, o.res, o.err, o.stderr)
	}
	cancel()
	o := <-done
	if !errors.Is(o.err, context.Canceled) || !o.res.TimedOut {
		t.Errorf("Run = %+v, %v; want TimedOut and context.Canceled", o.res, o.err)
	}
	if o.stdout != "partial\n" {
		t.Errorf("stdout %q, want the partial output", o.stdout)
	}
	noHostProcess(t, "sleep", "876550")

	// Already cancelled: nothing starts.
	o = runSpec(t, ctx, Spec{ExecRoot: root, Args: bash("echo started")})
	if !errors.Is(o.err, context.Canceled) || o.stdout != "" {
		t.Errorf("Run with a cancelled context = %+v, %v, stdout %q", o.res, o.err, o.stdout)
	}
}

// TestWorkerDeathKillsSandbox kills a process that is running a sandbox, as
// if the worker crashed, and checks that the sandbox dies with it, with its
// exec root bound or served by the dying process over FUSE.
func TestWorkerDeathKillsSandbox(t *testing.T) {
	t.Parallel()
	t.Run("bind", func(t *testing.T) {
		t.Parallel()
		testWorkerDeath(t, newExecRoot(t))
	})
	t.Run("fuse", func(t *testing.T) {
		t.Parallel()
		testWorkerDeath(t, fuseHelperPrefix+newExecRoot(t))
	})
}

func testWorkerDeath(t *testing.T, root string) {
	ctx, cancel := context.WithTimeout(context.Background(), runBound)
	defer cancel()
	helper := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"="+root)
	helper.Stderr = os.Stderr
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		helper.Process.Kill()
		helper.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("helper's sandbox did not start: %q, %v", line, err)
	}
	// The helper's child: the sandbox's init, whose end ends the sandbox.
	var initPID int
	for _, p := range hostProcesses(t, initArgv0) {
		b, err := os.ReadFile(filepath.Join("/proc", p, "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		var state string
		var ppid int
		_, rest, _ := strings.Cut(string(b), ") ")
		if _, err := fmt.Sscan(rest, &state, &ppid); err == nil && ppid == helper.Process.Pid {
			fmt.Sscan(p, &initPID)
		}
	}
	if initPID == 0 {
		t.Fatalf("no sandbox init among the helper's children")
	}
	pidfd, err := unix.PidfdOpen(initPID, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)

	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// A pidfd becomes readable when its process exits.
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(runBound/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("the sandbox outlived its worker by %v", runBound)
		}
		break
	}
	noHostProcess(t, "sleep", "876549")
	noFUSEMountOnHost(t)
}
