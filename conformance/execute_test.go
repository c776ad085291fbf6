package conformance

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas/digest"
)

const (
	// slowAction is how long the actions of the merging and WaitExecution
	// cases sleep: long enough that a second call arrives while the first
	// runs, short enough for the suite.
	slowAction = time.Second
	// actionTimeout is the Action.timeout of the timeout case, whose
	// command would sleep far longer.
	actionTimeout = time.Second
	// timeoutSlack is how much later than actionTimeout the timed-out
	// operation may end: the worker kills the command at the timeout, and
	// the rest is queueing, sandbox set-up and the report.
	timeoutSlack = 5 * time.Second
)

// TestExecute runs actions through Execute and WaitExecution on the
// target's workers. Its cases run one after another, as they share the
// workers' slots and some of them time what they wait for.
func TestExecute(t *testing.T) {
	t.Parallel()
	c := execClient(t)
	if c == nil {
		return
	}
	t.Run("RunsCommand", func(t *testing.T) { testRunsCommand(t, c) })
	t.Run("FailingCommandNotCached", func(t *testing.T) {
		a := newTestAction(t, actionSpec{script: "echo failing >&2; exit 3"})
		c.uploadAction(t, a)
		for i, what := range []string{"first Execute", "second Execute"} {
			resp := c.mustExecute(t, c.executeRequest(a, false))
			// The command ran to its end: that is an OK status, with
			// the exit code in the result.
			r := c.wantResult(t, what, resp, 3)
			c.wantStd(t, what, r, "", "failing\n")
			if resp.GetCachedResult() {
				t.Errorf("%s (%d): cached_result = true for an action that exited with 3", what, i)
			}
		}
	})
	t.Run("DoNotCache", func(t *testing.T) {
		a := newTestAction(t, actionSpec{script: "echo once", doNotCache: true})
		c.uploadAction(t, a)
		for _, what := range []string{"first Execute", "second Execute"} {
			resp := c.mustExecute(t, c.executeRequest(a, false))
			c.wantStd(t, what, c.wantResult(t, what, resp, 0), "once\n", "")
			if resp.GetCachedResult() {
				t.Errorf("%s: cached_result = true for a do_not_cache action", what)
			}
		}
		_, err := c.getResult(rpcContext(t), a.d, nil)
		wantCode(t, "GetActionResult of a do_not_cache action", err, codes.NotFound)
	})
	t.Run("MissingInputs", func(t *testing.T) { testMissingInputs(t, c) })
	t.Run("InvalidActionDigest", func(t *testing.T) {
		for _, bad := range badDigests() {
			req := &repb.ExecuteRequest{InstanceName: c.instance, ActionDigest: bad.d}
			e := c.execute(rpcContext(t), req)
			wantCode(t, "Execute with a "+bad.name+" action digest", e.err, codes.InvalidArgument, bad.mentions...)
		}
	})
	t.Run("IdenticalConcurrentExecutesRunOnce", func(t *testing.T) { testMerge(t, c) })
	t.Run("WaitExecutionAfterCancelledStream", func(t *testing.T) { testWaitAfterCancel(t, c) })
	t.Run("WaitExecutionAfterDone", func(t *testing.T) {
		// Bazel calls WaitExecution whenever a stream ends, also when the
		// operation finished just before: the name must still resolve.
		a := newTestAction(t, actionSpec{script: "echo done"})
		c.uploadAction(t, a)
		e := c.execute(rpcContext(t), c.executeRequest(a, false))
		if e.err != nil || e.done() == nil {
			t.Fatalf("Execute: %v (done: %v)", e.err, e.done() != nil)
		}
		name := e.done().GetName()
		w := c.wait(rpcContext(t), name)
		if w.err != nil {
			t.Fatalf("WaitExecution(%q) of a finished operation: %v", name, w.err)
		}
		resp := checkOperations(t, "WaitExecution of a finished operation", w.ops, a.d.Proto())
		c.wantStd(t, "WaitExecution of a finished operation", c.wantResult(t, "WaitExecution", resp, 0), "done\n", "")
	})
	t.Run("WaitExecutionUnknownName", func(t *testing.T) {
		e := c.wait(rpcContext(t), "operations/"+uuid.NewString())
		wantCode(t, "WaitExecution of an operation never started", e.err, codes.NotFound)
	})
	t.Run("Timeout", func(t *testing.T) {
		a := newTestAction(t, actionSpec{script: "echo started; sleep 30", timeout: actionTimeout})
		c.uploadAction(t, a)
		start := time.Now()
		resp := c.mustExecute(t, c.executeRequest(a, false))
		took := time.Since(start)
		if code := codes.Code(resp.GetStatus().GetCode()); code != codes.DeadlineExceeded {
			t.Errorf("ExecuteResponse.status %v (%q), want DEADLINE_EXCEEDED", code, resp.GetStatus().GetMessage())
		}
		if took > actionTimeout+timeoutSlack {
			t.Errorf("the timed-out operation took %v, want at most %v", took, actionTimeout+timeoutSlack)
		}
		if resp.GetCachedResult() {
			t.Errorf("cached_result = true for a timed-out action")
		}
		// The REAPI allows, and Bazel shows, the output of a timed-out
		// command up to its end: that is what tells a user where it hung.
		if r := resp.GetResult(); r == nil {
			t.Errorf("a timed-out action has no result with its partial output")
		} else {
			c.wantStd(t, "timed-out Execute", r, "started\n", "")
		}
		_, err := c.getResult(rpcContext(t), a.d, nil)
		wantCode(t, "GetActionResult of a timed-out action", err, codes.NotFound)
	})
	t.Run("OutputDirectories", func(t *testing.T) {
		a := newTestAction(t, actionSpec{
			script:     "mkdir -p out/dir/sub && printf A > out/dir/a && printf B > out/dir/sub/b",
			outputDirs: []string{"out/dir"},
		})
		c.uploadAction(t, a)
		r := c.wantResult(t, "Execute", c.mustExecute(t, c.executeRequest(a, false)), 0)
		c.wantTree(t, "output_directories", r, "out/dir", []byte("A"), []byte("B"))
	})
	t.Run("ExecutableAndAbsentOutputs", func(t *testing.T) {
		// An output the command does not create is left out of the
		// result; the executable bit travels with the file (Bazel runs
		// the binaries it links remotely).
		a := newTestAction(t, actionSpec{
			script:      "printf '#!/bin/sh\\n' > out/tool && chmod +x out/tool && printf D > out/data",
			outputFiles: []string{"out/absent", "out/data", "out/tool"},
		})
		c.uploadAction(t, a)
		r := c.wantResult(t, "Execute", c.mustExecute(t, c.executeRequest(a, false)), 0)
		c.wantOutputFile(t, "Execute", r, "out/tool", []byte("#!/bin/sh\n"))
		c.wantOutputFile(t, "Execute", r, "out/data", []byte("D"))
		for _, f := range r.GetOutputFiles() {
			switch f.GetPath() {
			case "out/absent":
				t.Errorf("the result lists out/absent, which the command did not create")
			case "out/tool", "out/data":
				if want := f.GetPath() == "out/tool"; f.GetIsExecutable() != want {
					t.Errorf("output file %s: is_executable = %v, want %v", f.GetPath(), f.GetIsExecutable(), want)
				}
			}
		}
	})
	t.Run("OutputSymlinks", func(t *testing.T) {
		// Declared in output_files, as Bazel 4 does: it reads symlinks
		// only from the deprecated output_file_symlinks. (A declared
		// output directory is created before the command runs, as Bazel
		// does for its tree artifacts, so a command cannot replace it
		// with a symlink.)
		a := newTestAction(t, actionSpec{
			script:      "mkdir -p out && printf D > out/data && ln -s data out/flink",
			outputFiles: []string{"out/data", "out/flink"},
		})
		c.uploadAction(t, a)
		r := c.wantResult(t, "Execute", c.mustExecute(t, c.executeRequest(a, false)), 0)
		c.wantOutputFile(t, "Execute", r, "out/data", []byte("D"))
		wantSymlink(t, "output_file_symlinks", r.GetOutputFileSymlinks(), "out/flink", "data")
		for _, f := range r.GetOutputFiles() {
			if f.GetPath() == "out/flink" {
				t.Errorf("the symlink out/flink is listed as a regular output file")
			}
		}
		// Declared in output_paths, symlinks go in output_symlinks,
		// whatever they point to.
		a = newTestAction(t, actionSpec{
			script:      "mkdir -p out/dir && ln -s dir out/dlink && ln -s nowhere out/dangling",
			outputPaths: []string{"out/dlink", "out/dangling"},
		})
		c.uploadAction(t, a)
		r = c.wantResult(t, "Execute", c.mustExecute(t, c.executeRequest(a, false)), 0)
		wantSymlink(t, "output_symlinks", r.GetOutputSymlinks(), "out/dlink", "dir")
		wantSymlink(t, "output_symlinks", r.GetOutputSymlinks(), "out/dangling", "nowhere")
		if len(r.GetOutputDirectories()) != 0 {
			t.Errorf("the symlink out/dlink is listed as an output directory: %v", r.GetOutputDirectories())
		}
	})
	t.Run("EnvironmentIsTheCommands", func(t *testing.T) {
		// arguments[0] without a slash is found in the Command's PATH,
		// and the command's environment is the Command's, nothing else:
		// an action's result must not depend on the worker it ran on.
		a := newTestAction(t, actionSpec{
			args: []string{"env"},
			env:  map[string]string{"PATH": "/nonexistent:/usr/bin:/bin", "MOUND_CONFORMANCE": "a value with spaces"},
		})
		c.uploadAction(t, a)
		r := c.wantResult(t, "Execute of env", c.mustExecute(t, c.executeRequest(a, false)), 0)
		cmd := &repb.Command{}
		if err := proto.Unmarshal(a.command.data, cmd); err != nil {
			t.Fatal(err)
		}
		var want strings.Builder
		for _, v := range cmd.GetEnvironmentVariables() {
			fmt.Fprintf(&want, "%s=%s\n", v.GetName(), v.GetValue())
		}
		c.wantStd(t, "Execute of env", r, want.String(), "")
	})
	t.Run("OutputPaths", func(t *testing.T) {
		// REAPI v2.1's output_paths replaces output_files and
		// output_directories; what each path is shows in the result.
		a := newTestAction(t, actionSpec{
			script:      "mkdir -p out/d/sub && printf F > out/f && printf A > out/d/a && printf B > out/d/sub/b",
			outputPaths: []string{"out/d", "out/f"},
		})
		c.uploadAction(t, a)
		r := c.wantResult(t, "Execute", c.mustExecute(t, c.executeRequest(a, false)), 0)
		c.wantOutputFile(t, "output_paths", r, "out/f", []byte("F"))
		c.wantTree(t, "output_paths", r, "out/d", []byte("A"), []byte("B"))
	})
}

// testRunsCommand runs an action that reads an input file and writes an
// output file, stdout and stderr, then executes it again: from the cache,
// and with skip_cache_lookup.
func testRunsCommand(t *testing.T, c *client) {
	data := randomBlob(t, 64).data
	a := newTestAction(t, actionSpec{
		script:      "cat in/data > out/file && echo to stdout && echo to stderr >&2",
		inputs:      map[string][]byte{"in/data": data},
		outputFiles: []string{"out/file"},
	})
	c.uploadAction(t, a)
	resp := c.mustExecute(t, c.executeRequest(a, false))
	first := c.wantResult(t, "Execute", resp, 0)
	if resp.GetCachedResult() {
		t.Errorf("cached_result = true for an action never executed before")
	}
	c.wantOutputFile(t, "Execute", first, "out/file", data)
	c.wantStd(t, "Execute", first, "to stdout\n", "to stderr\n")
	wantMetadata(t, "Execute", first)

	t.Run("SecondExecuteIsCached", func(t *testing.T) {
		resp := c.mustExecute(t, c.executeRequest(a, false))
		if !resp.GetCachedResult() {
			t.Errorf("cached_result = false for an action that succeeded before")
		}
		r := c.wantResult(t, "second Execute", resp, 0)
		c.wantOutputFile(t, "second Execute", r, "out/file", data)
		c.wantStd(t, "second Execute", r, "to stdout\n", "to stderr\n")
		got, err := c.getResult(rpcContext(t), a.d, nil)
		if err != nil {
			t.Fatalf("GetActionResult of an executed action: %v", err)
		}
		c.wantOutputFile(t, "GetActionResult", got, "out/file", data)
	})
	t.Run("SkipCacheLookupRunsAgain", func(t *testing.T) {
		resp := c.mustExecute(t, c.executeRequest(a, true))
		if resp.GetCachedResult() {
			t.Errorf("cached_result = true with skip_cache_lookup")
		}
		r := c.wantResult(t, "Execute with skip_cache_lookup", resp, 0)
		c.wantOutputFile(t, "Execute with skip_cache_lookup", r, "out/file", data)
		wantMetadata(t, "Execute with skip_cache_lookup", r)
		if proto.Equal(r.GetExecutionMetadata().GetExecutionStartTimestamp(), first.GetExecutionMetadata().GetExecutionStartTimestamp()) {
			t.Errorf("execution_start_timestamp %v is the first run's: the action did not run again",
				r.GetExecutionMetadata().GetExecutionStartTimestamp().AsTime())
		}
	})
}

// testMissingInputs executes actions whose blobs are partly missing from
// the CAS: each must fail with FAILED_PRECONDITION listing every missing
// blob the server can know of (a file below a missing directory cannot be
// known, so the cases upload those).
func testMissingInputs(t *testing.T, c *client) {
	// Each case has inputs of its own: one case's uploads must not fill
	// another's gaps.
	newSpec := func() actionSpec {
		return actionSpec{
			script: "cat in/a in/b in/sub/c",
			inputs: map[string][]byte{
				"in/a":     randomBlob(t, 20).data,
				"in/b":     randomBlob(t, 30).data,
				"in/sub/c": randomBlob(t, 40).data,
				"top":      randomBlob(t, 50).data,
			},
		}
	}
	t.Run("FilesAndDirectory", func(t *testing.T) {
		a := newTestAction(t, newSpec())
		missing := []digest.Digest{a.files["in/a"].d, a.files["in/b"].d, a.dirs["in/sub"].d}
		c.uploadAction(t, a, missing...)
		e := c.execute(rpcContext(t), c.executeRequest(a, false))
		wantMissingViolations(t, "Execute with two input files and a directory missing", e, missing...)
	})
	t.Run("CommandAndFile", func(t *testing.T) {
		a := newTestAction(t, newSpec())
		missing := []digest.Digest{a.command.d, a.files["top"].d}
		c.uploadAction(t, a, missing...)
		e := c.execute(rpcContext(t), c.executeRequest(a, false))
		wantMissingViolations(t, "Execute with the command and an input file missing", e, missing...)
	})
	t.Run("Action", func(t *testing.T) {
		a := newTestAction(t, newSpec())
		c.uploadAction(t, a, a.d)
		e := c.execute(rpcContext(t), c.executeRequest(a, false))
		wantMissingViolations(t, "Execute of an action missing from the CAS", e, a.d)
	})
	t.Run("UploadedThenRuns", func(t *testing.T) {
		// What Bazel does next: upload what was missing and retry.
		spec := newSpec()
		a := newTestAction(t, spec)
		c.uploadAction(t, a, a.files["in/a"].d)
		e := c.execute(rpcContext(t), c.executeRequest(a, false))
		wantMissingViolations(t, "Execute with an input file missing", e, a.files["in/a"].d)
		c.uploadAction(t, a)
		r := c.wantResult(t, "Execute after uploading", c.mustExecute(t, c.executeRequest(a, false)), 0)
		want := string(spec.inputs["in/a"]) + string(spec.inputs["in/b"]) + string(spec.inputs["in/sub/c"])
		c.wantStd(t, "Execute after uploading", r, want, "")
	})
}

// testMerge executes one slow action twice at the same time. The action
// prints random bytes, so two runs differ; the REAPI lets a server run it
// twice, but Bazel's identical actions (and every client's retries) then
// cost twice, so the suite requires one run: both responses carry the same
// stdout and execution_start_timestamp (also when the second call arrives
// late enough to be a cache hit of the first).
func testMerge(t *testing.T, c *client) {
	a := newTestAction(t, actionSpec{script: sleep() + "; od -An -tx1 -N16 /dev/urandom"})
	c.uploadAction(t, a)
	var wg sync.WaitGroup
	resps := make([]*repb.ExecuteResponse, 2)
	errs := make([]error, 2)
	for i := range resps {
		wg.Go(func() {
			e := c.execute(rpcContext(t), c.executeRequest(a, false))
			if errs[i] = e.err; e.err == nil && e.done() != nil {
				resps[i] = &repb.ExecuteResponse{}
				errs[i] = e.done().GetResponse().UnmarshalTo(resps[i])
			}
		})
	}
	wg.Wait()
	var results []*repb.ActionResult
	for i, resp := range resps {
		if errs[i] != nil || resp == nil {
			t.Fatalf("Execute %d of 2: %v (done: %v)", i+1, errs[i], resp != nil)
		}
		results = append(results, c.wantResult(t, "concurrent Execute", resp, 0))
	}
	out0 := c.output(t, results[0].GetStdoutDigest(), results[0].GetStdoutRaw())
	out1 := c.output(t, results[1].GetStdoutDigest(), results[1].GetStdoutRaw())
	if len(out0) == 0 || string(out0) != string(out1) {
		t.Errorf("two identical concurrent Executes ran twice: stdout %q and %q", out0, out1)
	}
	start0 := results[0].GetExecutionMetadata().GetExecutionStartTimestamp()
	start1 := results[1].GetExecutionMetadata().GetExecutionStartTimestamp()
	if start0 == nil || !proto.Equal(start0, start1) {
		t.Errorf("two identical concurrent Executes report execution_start_timestamp %v and %v: it ran twice", start0, start1)
	}
}

// testWaitAfterCancel starts a slow action, cancels the Execute stream
// once it has the operation's name, as a client losing its connection
// does, and follows the operation to its end with WaitExecution.
func testWaitAfterCancel(t *testing.T, c *client) {
	a := newTestAction(t, actionSpec{script: sleep() + "; echo finished > out/f", outputFiles: []string{"out/f"}})
	c.uploadAction(t, a)
	ctx, cancel := context.WithCancel(rpcContext(t))
	stream, err := c.exec.Execute(ctx, c.executeRequest(a, false))
	if err != nil {
		cancel()
		t.Fatalf("Execute: %v", err)
	}
	op, err := stream.Recv()
	cancel()
	if err != nil {
		t.Fatalf("Execute: first operation: %v", err)
	}
	if op.GetDone() {
		t.Fatalf("the operation of a new action that sleeps %v is done at once", slowAction)
	}
	e := c.wait(rpcContext(t), op.GetName())
	if e.err != nil {
		t.Fatalf("WaitExecution(%q) after the Execute stream was cancelled: %v", op.GetName(), e.err)
	}
	resp := checkOperations(t, "WaitExecution", e.ops, a.d.Proto())
	if name := e.ops[0].GetName(); name != op.GetName() {
		t.Errorf("WaitExecution(%q) streams operation %q", op.GetName(), name)
	}
	r := c.wantResult(t, "WaitExecution", resp, 0)
	c.wantOutputFile(t, "WaitExecution", r, "out/f", []byte("finished\n"))
}

// sleep is the shell command that sleeps for slowAction.
func sleep() string { return fmt.Sprintf("sleep %g", slowAction.Seconds()) }

// wantSymlink fails unless links holds the symlink p with target.
func wantSymlink(t testing.TB, field string, links []*repb.OutputSymlink, p, target string) {
	t.Helper()
	for _, l := range links {
		if l.GetPath() == p {
			if l.GetTarget() != target {
				t.Errorf("%s: %s points to %q, want %q", field, p, l.GetTarget(), target)
			}
			return
		}
	}
	t.Errorf("%s holds no %s: %v", field, p, links)
}
