package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// worker is a running workerd process connected to a mound.
type worker struct {
	// Name is the worker's name in mound's scheduler (--name).
	Name string
	// Dir is the worker's directory (--dir): its action directories and
	// blob cache.
	Dir string

	cmd    *exec.Cmd
	output *lineWatcher  // stdout and stderr, interleaved
	exited chan struct{} // closed once cmd.Wait has returned; then wait is set
	wait   error
	killed bool // by Kill; only the test goroutine reads and writes it
}

// workerOptions are the flags of a worker started by startWorker.
type workerOptions struct {
	// Name must be unique among the mound's workers.
	Name string
	// Jobs is how many actions the worker runs at once.
	Jobs int
	// Dir is the worker's directory; "" means a new t.TempDir(). A caller
	// that passes its own removes it after the test, which the worker's
	// cleanup (registered later, so run earlier) has stopped by then.
	Dir string
	// Platform is the worker's --platform, e.g. "network=on"; "" serves
	// the default pool.
	Platform string
	// Inputs is the worker's --inputs (fuse, hardlink, auto); "" leaves
	// workerd's default.
	Inputs string
}

// workerStartTimeout bounds the wait for a new worker to show up in mound's
// worker list: it opens its blob cache, checks that it can create a sandbox,
// and connects, all of which takes well under a second.
const workerStartTimeout = time.Minute

// startWorker builds and starts workerd against m, waits until mound's
// scheduler lists it, and stops it when the test ends. Its output is logged
// if the test failed.
func startWorker(t *testing.T, m *mound, opts workerOptions) *worker {
	t.Helper()
	bin := buildBinary(t, "./cmd/workerd")
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	w := &worker{Name: opts.Name, Dir: opts.Dir, output: newLineWatcher(nil), exited: make(chan struct{})}
	w.cmd = exec.Command(bin, "--server", m.GRPCAddr, "--jobs", strconv.Itoa(opts.Jobs), "--dir", opts.Dir, "--name", opts.Name)
	if opts.Platform != "" {
		w.cmd.Args = append(w.cmd.Args, "--platform", opts.Platform)
	}
	if opts.Inputs != "" {
		w.cmd.Args = append(w.cmd.Args, "--inputs", opts.Inputs)
	}
	w.cmd.Stdout = w.output
	w.cmd.Stderr = w.output
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("start workerd %s: %v", opts.Name, err)
	}
	// The owner of this goroutine is the cleanup below, which waits for
	// exited.
	go func() {
		w.wait = w.cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() { w.stop(t) })

	waitFor(t, workerStartTimeout, "mound lists worker "+opts.Name, func() (bool, error) {
		select {
		case <-w.exited:
			return false, fmt.Errorf("workerd exited before connecting: %v\n%s", w.wait, w.output.String())
		default:
		}
		_, err := m.Worker(opts.Name)
		if errors.Is(err, errNoSuchWorker) {
			return false, nil
		}
		return err == nil, err
	})
	return w
}

// ActionDirs returns the per-action directories in the worker's directory:
// workerd runs each action in its own directory under DIR/actions, removes
// it when the action ends, and removes what a crash left there when it
// starts.
func (w *worker) ActionDirs(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(w.Dir, "actions"))
	if err != nil {
		t.Fatalf("worker %s: %v", w.Name, err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// Pid is the worker process's id.
func (w *worker) Pid() int { return w.cmd.Process.Pid }

// Log returns what the worker has printed so far.
func (w *worker) Log() string { return w.output.String() }

// Kill sends SIGKILL, as a crash or the OOM killer would, and waits until the
// process is gone.
func (w *worker) Kill(t *testing.T) {
	t.Helper()
	w.killed = true
	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill workerd %s: %v", w.Name, err)
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	select {
	case <-w.exited:
	case <-timeout.C:
		t.Fatalf("workerd %s still running 30s after SIGKILL", w.Name)
	}
}

// stop sends SIGTERM, on which workerd cancels its actions and exits 0, and
// kills it if it has not exited within a bound. Any other exit fails the
// test, unless the test killed the worker itself.
func (w *worker) stop(t *testing.T) {
	select {
	case <-w.exited:
	default:
		w.cmd.Process.Signal(syscall.SIGTERM)
		timeout := time.NewTimer(30 * time.Second)
		defer timeout.Stop()
		select {
		case <-w.exited:
		case <-timeout.C:
			w.cmd.Process.Kill()
			<-w.exited
			t.Errorf("workerd %s did not stop within 30s of SIGTERM; killed it", w.Name)
		}
	}
	if w.wait != nil && !w.killed && !killedBy(w.wait, syscall.SIGTERM) {
		t.Errorf("workerd %s exited with %v", w.Name, w.wait)
	}
	if t.Failed() {
		t.Logf("workerd %s output:\n%s", w.Name, w.Log())
	}
}

// pollInterval is how often waitFor checks its condition: short against the
// seconds an action takes, long against the microseconds a check costs.
const pollInterval = 20 * time.Millisecond

// waitFor calls cond every pollInterval until it returns true, and fails the
// test if cond returns an error or timeout passes first.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting until %s: %v", what, err)
		}
		if ok {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("waited %v, still not: %s", timeout, what)
		case <-tick.C:
		}
	}
}

// hostProcess is a process found in the host's /proc.
type hostProcess struct {
	Pid     int
	Cmdline string // arguments joined by spaces
}

func (p hostProcess) String() string { return fmt.Sprintf("pid %d: %s", p.Pid, p.Cmdline) }

// processesWith returns every process on the host whose command line
// contains marker. The tests give the processes an action starts a marker
// that is unique to the run (other tests and other workers may run on the
// same machine), and look for it on the host afterwards.
func processesWith(t *testing.T, marker string) []hostProcess {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("list processes: %v", err)
	}
	var found []hostProcess
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// A process that exits between ReadDir and here is simply gone.
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(marker)) {
			continue
		}
		cmdline := strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
		found = append(found, hostProcess{Pid: pid, Cmdline: cmdline})
	}
	return found
}

// parentPid returns the parent of process pid, read from /proc/pid/stat.
func parentPid(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses,
	// so the fields are counted from the last ')'.
	var fields []string
	if i := bytes.LastIndexByte(b, ')'); i >= 0 {
		fields = strings.Fields(string(b[i+1:]))
	}
	if len(fields) < 2 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format %q", pid, b)
	}
	return strconv.Atoi(fields[1])
}

// descendsFrom reports whether process pid is a descendant of ancestor. A
// process that has gone away in the meantime descends from nothing.
func descendsFrom(pid, ancestor int) bool {
	for pid > 1 {
		ppid, err := parentPid(pid)
		if err != nil {
			return false
		}
		if ppid == ancestor {
			return true
		}
		pid = ppid
	}
	return false
}

// uniqueMarker returns prefix followed by a suffix that no other test run on
// this machine uses.
func uniqueMarker(prefix string) string {
	return fmt.Sprintf("%s-%d-%s", prefix, os.Getpid(), strconv.FormatInt(time.Now().UnixNano(), 36))
}
