package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/mound-build/mound/scheduler/workerpb"
)

// runAdmin runs `mound admin args...` as its own process and returns its
// stdout, stderr and exit status.
func runAdmin(t *testing.T, addr string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"admin", "--server", addr}, args...)...)
	cmd.Env = append(os.Environ(), "MOUND_TEST_MAIN=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("mound admin %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// TestAdminCommands drives `mound admin workers|pause|unpause|drain` against
// a real server with one worker session, played by the test, connected.
func TestAdminCommands(t *testing.T) {
	srv := startServer(t, t.TempDir())
	conn := dial(t, srv.addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := workerpb.NewSchedulerClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hello := &workerpb.Hello{Name: "admin-test-worker", Jobs: 3, Platform: []*workerpb.Property{{Name: "OSFamily", Value: "linux"}}}
	if err := stream.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	if m, err := stream.Recv(); err != nil || m.GetWelcome() == nil {
		t.Fatalf("Hello answered with %v, %v", m, err)
	}
	admin := workerpb.NewAdminClient(conn)
	state := func() workerpb.WorkerState {
		t.Helper()
		resp, err := admin.ListWorkers(ctx, &workerpb.ListWorkersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range resp.GetWorkers() {
			if w.GetName() == hello.Name {
				return w.GetState()
			}
		}
		return workerpb.WorkerState_WORKER_STATE_UNSPECIFIED
	}

	// The scheduler lists a worker just after its Welcome.
	deadline := time.After(10 * time.Second)
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for state() != workerpb.WorkerState_ACTIVE {
		select {
		case <-deadline:
			t.Fatal("the scheduler does not list the worker 10s after its Welcome")
		case <-poll.C:
		}
	}
	out, errOut, code := runAdmin(t, srv.addr, "workers")
	if code != 0 || !regexp.MustCompile(`(?m)^admin-test-worker\s+ACTIVE\s+3\s+0\s+0\s+\{OSFamily=linux\}`).MatchString(out) {
		t.Fatalf("mound admin workers: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, step := range []struct {
		cmd  string
		want workerpb.WorkerState
	}{
		{"pause", workerpb.WorkerState_PAUSED},
		{"unpause", workerpb.WorkerState_ACTIVE},
		{"drain", workerpb.WorkerState_DRAINING},
	} {
		out, errOut, code := runAdmin(t, srv.addr, step.cmd, hello.Name)
		if code != 0 || out != hello.Name+": "+step.want.String()+" (0 running)\n" {
			t.Errorf("mound admin %s: exit %d, stdout %q, stderr %q", step.cmd, code, out, errOut)
		}
		if got := state(); got != step.want {
			t.Errorf("after mound admin %s: the scheduler lists the worker %v, want %v", step.cmd, got, step.want)
		}
	}
	// The drained worker was idle, so it is told to leave at once.
	if m, err := stream.Recv(); err != nil || m.GetGoodbye() == nil {
		t.Errorf("drained idle worker got %v, %v; want a Goodbye", m, err)
	}

	if _, errOut, code := runAdmin(t, srv.addr, "pause", "no-such-worker"); code != 1 || !bytes.Contains([]byte(errOut), []byte(`no connected worker is named "no-such-worker"`)) {
		t.Errorf("mound admin pause of an unknown worker: exit %d, stderr %q", code, errOut)
	}
	for _, bad := range [][]string{{}, {"pause"}, {"workers", "extra"}, {"frobnicate", hello.Name}} {
		if _, _, code := runAdmin(t, srv.addr, bad...); code != 2 {
			t.Errorf("mound admin %q: exit %d, want 2 (usage)", bad, code)
		}
	}
}
