package conformance

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/mound-build/mound/scheduler/workerpb"
)

const (
	// workerName is the --name of the worker the suite starts; the set-up
	// waits until the server's ListWorkers lists it.
	workerName = "conformance-worker"
	// workerJobs is the worker's --jobs: two slots, so that the cases that
	// run two actions at once (merging, a cancelled stream) never wait for
	// a slot.
	workerJobs = 2
	// workerPollInterval is how often the set-up asks ListWorkers whether
	// the worker has connected: the worker announces itself to the server,
	// not to the suite, so there is nothing to wait on but the server's
	// answer.
	workerPollInterval = 20 * time.Millisecond
)

// execClient returns the client of the execution cases, or nil when the
// target does not execute actions. Against an external -target that is a
// property of the target, which its Capabilities state (exec_enabled): the
// case logs it and passes, as the storage cases are all the target offers.
// Against the mound the suite starts, execution always runs: the suite
// starts a workerd beside it, and a failed set-up fails the case.
func execClient(t *testing.T) *client {
	t.Helper()
	c := defaultClient(t)
	suite.execOnce.Do(func() { suite.exec, suite.execErr = execSetup(c) })
	if suite.execErr != nil {
		t.Fatalf("no execution to test: %v", suite.execErr)
	}
	if !suite.exec {
		t.Logf("the target %s does not advertise execution_capabilities.exec_enabled: it is a cache only, and the execution cases do not apply to it", *targetFlag)
		return nil
	}
	return c
}

// execSetup asks the target whether it executes actions, and starts the
// suite's worker when the suite started the server.
func execSetup(c *client) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	caps, err := c.caps.GetCapabilities(ctx, &repb.GetCapabilitiesRequest{InstanceName: c.instance})
	if err != nil {
		return false, fmt.Errorf("GetCapabilities: %w", err)
	}
	enabled := caps.GetExecutionCapabilities().GetExecEnabled()
	if suite.srv == nil {
		return enabled, nil
	}
	if !enabled {
		return false, fmt.Errorf("the suite's own mound does not advertise execution_capabilities.exec_enabled")
	}
	if suite.worker, err = startWorker(*workerdFlag, suite.srv.addr); err != nil {
		return false, err
	}
	if err := waitForWorker(c, suite.worker, workerName); err != nil {
		return false, err
	}
	return true, nil
}

// startWorker starts bin, or a workerd built from the module around the
// working directory when bin is empty, connected to the server at addr,
// with a fresh directory.
func startWorker(bin, addr string) (*process, error) {
	dir, err := os.MkdirTemp("", "mound-conformance-worker-")
	if err != nil {
		return nil, err
	}
	p := &process{bin: bin, dir: dir, out: newServerOutput(), exited: make(chan error, 1)}
	if p.bin == "" {
		if p.bin, err = buildCommand(dir, "./cmd/workerd"); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	} else {
		os.Stat(p.bin) // for go test's result cache, as with -mound
	}
	p.cmd = exec.Command(p.bin, "--server", addr, "--jobs", fmt.Sprint(workerJobs),
		"--dir", filepath.Join(dir, "work"), "--name", workerName, "--inputs", *inputsFlag)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out.stderr()
	if err := p.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// waitForWorker polls the server's Admin ListWorkers until it lists name,
// for at most startTimeout; it stops w and fails if w exits first.
func waitForWorker(c *client, w *process, name string) error {
	admin := workerpb.NewAdminClient(c.conn)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(workerPollInterval)
	defer tick.Stop()
	for {
		resp, err := admin.ListWorkers(ctx, &workerpb.ListWorkersRequest{})
		if err == nil && slices.ContainsFunc(resp.GetWorkers(), func(i *workerpb.WorkerInfo) bool { return i.GetName() == name }) {
			return nil
		}
		select {
		case err := <-w.exited:
			w.exited <- err
			return fmt.Errorf("%s exited before connecting (%v); output:\n%s", w.bin, err, w.output())
		case <-ctx.Done():
			return fmt.Errorf("the server lists no worker %q %v after starting %s (last ListWorkers error: %v); worker output:\n%s",
				name, startTimeout, w.bin, err, w.output())
		case <-tick.C:
		}
	}
}
