package conformance

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mound-build/mound/cas/digest"
)

// actionSpec describes an action of an execution case: a shell script run
// in the input root, the files of that root, and what it outputs.
type actionSpec struct {
	script string // run by /bin/sh -c in the input root
	// args, when set, replaces /bin/sh -c script as the Command's
	// arguments; env replaces its environment (the nonce stays).
	args   []string
	env    map[string]string
	inputs map[string][]byte // input files by path, e.g. "in/data.txt"
	// outputFiles and outputDirs are the Command's output_files and
	// output_directories, as Bazel 4 sends them; outputPaths is
	// output_paths, which replaces both in REAPI v2.1.
	outputFiles, outputDirs, outputPaths []string
	timeout                              time.Duration // 0: none
	doNotCache                           bool
}

// testAction is an Action, its Command and its input tree as blobs, not yet
// uploaded.
type testAction struct {
	d       digest.Digest // of the Action
	action  blob
	command blob
	dirs    map[string]blob // input directories by path; "" is the root
	files   map[string]blob // input files by path
}

// newTestAction builds the action of spec. Its Command carries an
// environment variable of fresh random bytes, so that the action is new to
// the server even when it holds results of earlier runs.
func newTestAction(t testing.TB, spec actionSpec) *testAction {
	t.Helper()
	a := &testAction{dirs: map[string]blob{}, files: map[string]blob{}}
	for p, data := range spec.inputs {
		a.files[p] = newBlobOf(data)
	}
	root := a.directory(t, "")
	env := spec.env
	if env == nil {
		env = map[string]string{"PATH": "/usr/local/bin:/usr/bin:/bin"}
	}
	env = maps.Clone(env)
	env["CONFORMANCE_NONCE"] = hex.EncodeToString(randomBlob(t, 16).data)
	cmd := &repb.Command{
		Arguments:         []string{"/bin/sh", "-c", spec.script},
		OutputFiles:       spec.outputFiles,
		OutputDirectories: spec.outputDirs,
		OutputPaths:       spec.outputPaths,
	}
	if spec.args != nil {
		cmd.Arguments = spec.args
	}
	// Sorted by name, as the REAPI requires.
	for _, name := range slices.Sorted(maps.Keys(env)) {
		cmd.EnvironmentVariables = append(cmd.EnvironmentVariables, &repb.Command_EnvironmentVariable{Name: name, Value: env[name]})
	}
	a.command = messageBlob(t, cmd)
	action := &repb.Action{CommandDigest: a.command.pb(), InputRootDigest: root.pb(), DoNotCache: spec.doNotCache}
	if spec.timeout > 0 {
		action.Timeout = durationpb.New(spec.timeout)
	}
	a.action = messageBlob(t, action)
	a.d = a.action.d
	return a
}

// directory builds the input Directory at dir from a.files, and those below
// it, into a.dirs and returns it.
func (a *testAction) directory(t testing.TB, dir string) blob {
	t.Helper()
	d := &repb.Directory{}
	subdirs := map[string]bool{}
	for _, p := range slices.Sorted(maps.Keys(a.files)) {
		rel, ok := strings.CutPrefix(p, dir)
		if !ok || (dir != "" && !strings.HasPrefix(rel, "/")) {
			continue
		}
		rel = strings.TrimPrefix(rel, "/")
		if name, _, nested := strings.Cut(rel, "/"); nested {
			subdirs[name] = true
		} else {
			d.Files = append(d.Files, &repb.FileNode{Name: rel, Digest: a.files[p].pb()})
		}
	}
	// Files are sorted since the paths are; directories sorted here.
	for _, name := range slices.Sorted(maps.Keys(subdirs)) {
		sub := a.directory(t, path.Join(dir, name))
		d.Directories = append(d.Directories, &repb.DirectoryNode{Name: name, Digest: sub.pb()})
	}
	b := messageBlob(t, d)
	a.dirs[dir] = b
	return b
}

func messageBlob(t testing.TB, m proto.Message) blob {
	t.Helper()
	data, d, err := digest.OfMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	return blob{data: data, d: d}
}

// blobs returns every blob of a: Action, Command, directories and files.
func (a *testAction) blobs() []blob {
	bs := []blob{a.action, a.command}
	bs = append(bs, slices.Collect(maps.Values(a.dirs))...)
	return append(bs, slices.Collect(maps.Values(a.files))...)
}

// uploadAction stores every blob of a but those in except.
func (c *client) uploadAction(t testing.TB, a *testAction, except ...digest.Digest) {
	t.Helper()
	var bs []blob
	for _, b := range a.blobs() {
		if !slices.Contains(except, b.d) && !b.d.IsEmpty() {
			bs = append(bs, b)
		}
	}
	c.upload(t, bs...)
}

// executeRequest asks to execute a in c's instance.
func (c *client) executeRequest(a *testAction, skipCacheLookup bool) *repb.ExecuteRequest {
	return &repb.ExecuteRequest{InstanceName: c.instance, ActionDigest: a.d.Proto(), SkipCacheLookup: skipCacheLookup}
}

// execution is what one Execute or WaitExecution stream delivered: its
// operations in order, and the error that ended it (nil for a clean end).
type execution struct {
	ops []*longrunningpb.Operation
	err error
}

// done returns the last operation if it is done, else nil.
func (e execution) done() *longrunningpb.Operation {
	if n := len(e.ops); n > 0 && e.ops[n-1].GetDone() {
		return e.ops[n-1]
	}
	return nil
}

// receive reads a stream of operations to its end.
func receive(stream interface {
	Recv() (*longrunningpb.Operation, error)
}) execution {
	var e execution
	for {
		op, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return e
		}
		if err != nil {
			e.err = err
			return e
		}
		e.ops = append(e.ops, op)
	}
}

// execute runs one Execute call to its end.
func (c *client) execute(ctx context.Context, req *repb.ExecuteRequest) execution {
	stream, err := c.exec.Execute(ctx, req)
	if err != nil {
		return execution{err: err}
	}
	return receive(stream)
}

// wait runs one WaitExecution call to its end.
func (c *client) wait(ctx context.Context, name string) execution {
	stream, err := c.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: name})
	if err != nil {
		return execution{err: err}
	}
	return receive(stream)
}

// mustExecute executes req and returns the ExecuteResponse of its done
// operation, failing the test on any error or malformed operation. A
// stream that ends cleanly before the operation is done is continued with
// WaitExecution, as the REAPI allows and Bazel does.
func (c *client) mustExecute(t testing.TB, req *repb.ExecuteRequest) *repb.ExecuteResponse {
	t.Helper()
	e := c.execute(rpcContext(t), req)
	if e.err != nil {
		t.Fatalf("Execute %v: %v", digestString(req.GetActionDigest()), e.err)
	}
	if e.done() == nil && len(e.ops) > 0 {
		more := c.wait(rpcContext(t), e.ops[len(e.ops)-1].GetName())
		if more.err != nil {
			t.Fatalf("Execute %v ended before done; WaitExecution: %v", digestString(req.GetActionDigest()), more.err)
		}
		e.ops = append(e.ops, more.ops...)
	}
	return checkOperations(t, "Execute "+digestString(req.GetActionDigest()), e.ops, req.GetActionDigest())
}

// checkOperations checks the operations of one execution, as one or more
// streams delivered them, and returns the done operation's response:
// every operation has the same non-empty name and ExecuteOperationMetadata
// naming action, none sets Operation.error (the REAPI forbids it: errors of
// an execution go into ExecuteResponse.status), the stages never go back,
// and only the last operation is done, at COMPLETED, with an
// ExecuteResponse.
//
// The REAPI lets an operation go back from EXECUTING to QUEUED when a
// worker fails; nothing fails here, so the suite requires the order.
func checkOperations(t testing.TB, what string, ops []*longrunningpb.Operation, action *repb.Digest) *repb.ExecuteResponse {
	t.Helper()
	if len(ops) == 0 {
		t.Fatalf("%s: no operation", what)
	}
	name := ops[0].GetName()
	if name == "" {
		t.Errorf("%s: operation without a name", what)
	}
	var last repb.ExecutionStage_Value
	var stages []string
	for i, op := range ops {
		if op.GetName() != name {
			t.Errorf("%s: operation %d is named %q, the first %q", what, i, op.GetName(), name)
		}
		if op.GetError() != nil {
			t.Fatalf("%s: operation %d sets Operation.error %v; errors of an execution belong in ExecuteResponse.status", what, i, op.GetError())
		}
		md := &repb.ExecuteOperationMetadata{}
		if err := op.GetMetadata().UnmarshalTo(md); err != nil {
			t.Fatalf("%s: operation %d: metadata is not ExecuteOperationMetadata: %v", what, i, err)
		}
		if !proto.Equal(md.GetActionDigest(), action) {
			t.Errorf("%s: operation %d: metadata names action %v", what, i, digestString(md.GetActionDigest()))
		}
		stages = append(stages, md.GetStage().String())
		if md.GetStage() < last || md.GetStage() == repb.ExecutionStage_UNKNOWN {
			t.Errorf("%s: stages out of order: %v", what, stages)
		}
		last = md.GetStage()
		if op.GetDone() != (i == len(ops)-1) {
			t.Fatalf("%s: operation %d of %d has done = %v; only the last must be done (stages %v)", what, i+1, len(ops), op.GetDone(), stages)
		}
	}
	if last != repb.ExecutionStage_COMPLETED {
		t.Errorf("%s: done operation at stage %v, want COMPLETED", what, last)
	}
	resp := &repb.ExecuteResponse{}
	if err := ops[len(ops)-1].GetResponse().UnmarshalTo(resp); err != nil {
		t.Fatalf("%s: done operation's response is not an ExecuteResponse: %v", what, err)
	}
	return resp
}

// wantResult fails unless resp carries a result of an execution that ran
// to its end with exit code exit.
func (c *client) wantResult(t testing.TB, what string, resp *repb.ExecuteResponse, exit int32) *repb.ActionResult {
	t.Helper()
	if err := status.ErrorProto(resp.GetStatus()); err != nil {
		t.Fatalf("%s: ExecuteResponse.status %v, want OK", what, err)
	}
	r := resp.GetResult()
	if r == nil {
		t.Fatalf("%s: ExecuteResponse with OK status but no result", what)
	}
	if r.GetExitCode() != exit {
		t.Fatalf("%s: exit code %d, want %d; stderr %q", what, r.GetExitCode(), exit, c.output(t, r.GetStderrDigest(), r.GetStderrRaw()))
	}
	return r
}

// output returns the content of an output blob: the inline bytes when the
// server sent them, else the blob read from the CAS.
func (c *client) output(t testing.TB, d *repb.Digest, inline []byte) []byte {
	t.Helper()
	if len(inline) > 0 || d == nil {
		return inline
	}
	dg, err := digest.FromProto(d)
	if err != nil {
		t.Fatalf("output digest %v: %v", d, err)
	}
	return c.readBlob(t, dg)
}

// wantStd fails unless r's stdout and stderr are the given text.
func (c *client) wantStd(t testing.TB, what string, r *repb.ActionResult, stdout, stderr string) {
	t.Helper()
	if got := string(c.output(t, r.GetStdoutDigest(), r.GetStdoutRaw())); got != stdout {
		t.Errorf("%s: stdout %q, want %q", what, got, stdout)
	}
	if got := string(c.output(t, r.GetStderrDigest(), r.GetStderrRaw())); got != stderr {
		t.Errorf("%s: stderr %q, want %q", what, got, stderr)
	}
}

// wantMetadata fails unless r's ExecutedActionMetadata names a worker and
// sets every stage timestamp, in the order of the stages.
func wantMetadata(t testing.TB, what string, r *repb.ActionResult) {
	t.Helper()
	md := r.GetExecutionMetadata()
	if md.GetWorker() == "" {
		t.Errorf("%s: ExecutedActionMetadata.worker is empty", what)
	}
	stamps := []struct {
		name string
		ts   *timestamppb.Timestamp
	}{
		{"queued", md.GetQueuedTimestamp()},
		{"worker_start", md.GetWorkerStartTimestamp()},
		{"input_fetch_start", md.GetInputFetchStartTimestamp()},
		{"input_fetch_completed", md.GetInputFetchCompletedTimestamp()},
		{"execution_start", md.GetExecutionStartTimestamp()},
		{"execution_completed", md.GetExecutionCompletedTimestamp()},
		{"output_upload_start", md.GetOutputUploadStartTimestamp()},
		{"output_upload_completed", md.GetOutputUploadCompletedTimestamp()},
		{"worker_completed", md.GetWorkerCompletedTimestamp()},
	}
	var prev time.Time
	for i, s := range stamps {
		if s.ts == nil || s.ts.CheckValid() != nil || s.ts.AsTime().IsZero() || s.ts.AsTime().Unix() == 0 {
			t.Errorf("%s: ExecutedActionMetadata %s_timestamp not set (%v)", what, s.name, s.ts)
			return
		}
		at := s.ts.AsTime()
		if i > 0 && at.Before(prev) {
			t.Errorf("%s: ExecutedActionMetadata %s_timestamp %v is before %s_timestamp %v",
				what, s.name, at.Format(time.RFC3339Nano), stamps[i-1].name, prev.Format(time.RFC3339Nano))
		}
		prev = at
	}
}

// preconditionFailure fails unless e failed with FAILED_PRECONDITION, and
// returns the violations of its PreconditionFailure details. The REAPI
// reports an error found while creating the operation as the stream's gRPC
// status, and one found while running it in the done operation's
// ExecuteResponse.status; a missing blob may be found at either time, so
// both forms are accepted.
func preconditionFailure(t testing.TB, what string, e execution) []*errdetails.PreconditionFailure_Violation {
	t.Helper()
	var st *status.Status
	switch {
	case e.err != nil:
		st = status.Convert(e.err)
	case e.done() != nil:
		resp := &repb.ExecuteResponse{}
		if err := e.done().GetResponse().UnmarshalTo(resp); err != nil {
			t.Fatalf("%s: done operation's response is not an ExecuteResponse: %v", what, err)
		}
		st = status.FromProto(resp.GetStatus())
	default:
		t.Fatalf("%s: the stream ended without an error or a done operation", what)
	}
	var violations []*errdetails.PreconditionFailure_Violation
	for _, d := range st.Details() {
		if pf, ok := d.(*errdetails.PreconditionFailure); ok {
			violations = append(violations, pf.GetViolations()...)
		}
	}
	if st.Code() != codes.FailedPrecondition {
		t.Errorf("%s: got %v (%s), want FAILED_PRECONDITION", what, st.Code(), st.Message())
	}
	return violations
}

// wantMissingViolations fails unless e failed with FAILED_PRECONDITION holding one
// MISSING violation "blobs/{hash}/{size}" for each of want, and no other:
// Bazel uploads the blobs the violations name and retries only when every
// violation is MISSING.
func wantMissingViolations(t testing.TB, what string, e execution, want ...digest.Digest) {
	t.Helper()
	violations := preconditionFailure(t, what, e)
	wantSubjects := map[string]bool{}
	for _, d := range want {
		wantSubjects["blobs/"+d.String()] = true
	}
	seen := map[string]bool{}
	for _, v := range violations {
		switch {
		case v.GetType() != "MISSING":
			t.Errorf("%s: violation %q of type %q, want MISSING", what, v.GetSubject(), v.GetType())
		case seen[v.GetSubject()]:
			t.Errorf("%s: violation %q listed twice", what, v.GetSubject())
		case !wantSubjects[v.GetSubject()]:
			t.Errorf("%s: violation %q names no missing blob (missing: %v)", what, v.GetSubject(), slices.Sorted(maps.Keys(wantSubjects)))
		}
		seen[v.GetSubject()] = true
	}
	for s := range wantSubjects {
		if !seen[s] {
			t.Errorf("%s: no MISSING violation for %s (violations: %v)", what, s, violations)
		}
	}
}

// readTree reads and decodes the Tree blob of an output directory.
func (c *client) readTree(t testing.TB, what string, d *repb.Digest) *repb.Tree {
	t.Helper()
	tree := &repb.Tree{}
	if err := proto.Unmarshal(c.output(t, d, nil), tree); err != nil {
		t.Fatalf("%s: tree %v does not decode as a Tree: %v", what, digestString(d), err)
	}
	return tree
}

// wantOutputFile fails unless r has the output file p with content data.
func (c *client) wantOutputFile(t testing.TB, what string, r *repb.ActionResult, p string, data []byte) {
	t.Helper()
	for _, f := range r.GetOutputFiles() {
		if f.GetPath() != p {
			continue
		}
		if want := digest.OfBytes(data); digestString(f.GetDigest()) != want.String() {
			t.Errorf("%s: output file %s has digest %v, want %v (of %q)", what, p, digestString(f.GetDigest()), want, data)
		}
		if got := c.output(t, f.GetDigest(), f.GetContents()); string(got) != string(data) {
			t.Errorf("%s: output file %s reads %q, want %q", what, p, got, data)
		}
		return
	}
	t.Errorf("%s: no output file %s among %v", what, p, outputPaths(r))
}

func outputPaths(r *repb.ActionResult) []string {
	var ps []string
	for _, f := range r.GetOutputFiles() {
		ps = append(ps, f.GetPath())
	}
	for _, d := range r.GetOutputDirectories() {
		ps = append(ps, d.GetPath()+"/")
	}
	return ps
}

// wantTree fails unless the output directory p of r is a Tree whose root
// holds the file "a" with content a and the directory "sub" holding the
// file "b" with content b, whose DirectoryNode digest is that of the
// child Directory the Tree holds.
func (c *client) wantTree(t testing.TB, what string, r *repb.ActionResult, p string, a, b []byte) {
	t.Helper()
	i := slices.IndexFunc(r.GetOutputDirectories(), func(d *repb.OutputDirectory) bool { return d.GetPath() == p })
	if i < 0 {
		t.Fatalf("%s: no output directory %s among %v", what, p, outputPaths(r))
	}
	tree := c.readTree(t, what, r.GetOutputDirectories()[i].GetTreeDigest())
	wantFile := func(where string, d *repb.Directory, name string, data []byte) {
		t.Helper()
		for _, f := range d.GetFiles() {
			if f.GetName() == name {
				if want := digest.OfBytes(data); digestString(f.GetDigest()) != want.String() {
					t.Errorf("%s: %s/%s has digest %v, want %v", what, where, name, digestString(f.GetDigest()), want)
				}
				return
			}
		}
		t.Errorf("%s: %s holds no file %q: %v", what, where, name, d)
	}
	wantFile(p, tree.GetRoot(), "a", a)
	dirs := tree.GetRoot().GetDirectories()
	if len(dirs) != 1 || dirs[0].GetName() != "sub" {
		t.Fatalf("%s: %s holds directories %v, want just sub", what, p, dirs)
	}
	for _, child := range tree.GetChildren() {
		if fmt.Sprint(messageBlob(t, child).d) == digestString(dirs[0].GetDigest()) {
			wantFile(p+"/sub", child, "b", b)
			return
		}
	}
	t.Errorf("%s: the Tree holds no child Directory of digest %v, the digest of %s/sub", what, digestString(dirs[0].GetDigest()), p)
}
