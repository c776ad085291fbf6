package workerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/remote"
	"github.com/mound-build/mound/fuseinput"
	"github.com/mound-build/mound/scheduler/workerpb"
	"github.com/mound-build/mound/workerd/blobcache"
	"github.com/mound-build/mound/workerd/inputs"
	"github.com/mound-build/mound/workerd/outputs"
	"github.com/mound-build/mound/workerd/sandbox"
)

// runner runs one task at a time per call: inputs, sandbox, outputs.
type runner struct {
	opts    Options
	actions string // directory of per-action directories
	cache   *blobcache.Cache
	// fuse presents input trees lazily; nil when inputs are hardlinked.
	fuse  *fuseinput.FS
	reads *readSets // what commands read last, to prefetch

	mu      sync.Mutex
	remotes map[string]*remote.Client // by instance name; guarded by mu
}

func newRunner(opts Options) (*runner, error) {
	if err := sandbox.Available(); err != nil {
		return nil, fmt.Errorf("workerd: cannot run sandboxed actions here: %w", err)
	}
	r := &runner{opts: opts, actions: filepath.Join(opts.Dir, "actions"), remotes: map[string]*remote.Client{}}
	if err := cleanDir(r.actions); err != nil {
		return nil, fmt.Errorf("workerd: clean %s: %w", r.actions, err)
	}
	rc, err := r.remote("")
	if err != nil {
		return nil, err
	}
	r.cache, err = blobcache.Open(blobcache.Options{Dir: filepath.Join(opts.Dir, "cache"), MaxBytes: opts.CacheBytes, Remote: rc, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	mode, why, err := chooseInputs(opts.Inputs)
	if err != nil {
		return nil, err
	}
	opts.Logger.Info("inputs: "+string(mode), "why", why)
	if mode == InputsFUSE {
		r.fuse, err = fuseinput.New(fuseinput.Options{
			Files: r.cache, UID: sandbox.InsideUID, GID: sandbox.InsideGID,
			Passthrough: !opts.NoPassthrough, Logger: opts.Logger,
		})
		if err != nil {
			return nil, err
		}
		r.reads = newReadSets(defaultReadSetPaths)
	}
	return r, nil
}

// chooseInputs settles the input mode, with the reason for the log.
func chooseInputs(mode InputMode) (InputMode, string, error) {
	switch mode {
	case InputsHardlink:
		return mode, "asked for with --inputs=hardlink", nil
	case InputsFUSE:
		if err := sandbox.AvailableFUSE(); err != nil {
			return "", "", fmt.Errorf("workerd: --inputs=fuse, but sandboxes cannot mount FUSE here: %w", err)
		}
		return mode, "asked for with --inputs=fuse", nil
	}
	if err := sandbox.AvailableFUSE(); err != nil {
		return InputsHardlink, fmt.Sprintf("FUSE cannot be mounted in a sandbox here (%v): inputs are hardlinked before each action", err), nil
	}
	return InputsFUSE, "a sandbox can mount FUSE here: input trees are fetched lazily, file by file", nil
}

// close ends the runner's background work; no task runs any more.
func (r *runner) close() {
	if r.fuse != nil {
		r.fuse.Close()
	}
}

// remote returns the CAS client of an instance.
func (r *runner) remote(instance string) (*remote.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.remotes[instance]; c != nil {
		return c, nil
	}
	c, err := remote.New(r.opts.Conn, remote.Options{Instance: instance})
	if err != nil {
		return nil, err
	}
	r.remotes[instance] = c
	return c, nil
}

// run executes a task and returns what to report. It never returns nil.
func (r *runner) run(ctx context.Context, task *workerpb.Task) *repb.ExecuteResponse {
	md := &repb.ExecutedActionMetadata{Worker: r.opts.Name, WorkerStartTimestamp: timestamppb.Now(), QueuedTimestamp: task.GetQueuedAt()}
	resp, err := r.execute(ctx, task, md)
	if err != nil {
		r.opts.Logger.Warn("action failed to run", "task", task.GetTaskId(), "action", task.GetActionDigest(), "err", err)
		return &repb.ExecuteResponse{Status: errorStatus(err)}
	}
	return resp
}

func (r *runner) execute(ctx context.Context, task *workerpb.Task, md *repb.ExecutedActionMetadata) (*repb.ExecuteResponse, error) {
	action, cmd := &repb.Action{}, &repb.Command{}
	if err := proto.Unmarshal(task.GetAction(), action); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "malformed Action: %v", err)
	}
	if err := proto.Unmarshal(task.GetCommand(), cmd); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "malformed Command: %v", err)
	}
	rootDigest, err := digest.FromProto(action.GetInputRootDigest())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "input_root_digest: %v", err)
	}
	store, err := r.remote(task.GetInstanceName())
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(r.actions, "a-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "root")

	cmdDigest := digest.OfBytes(task.GetCommand())
	md.InputFetchStartTimestamp = timestamppb.Now()
	// Hardlinking the inputs may take as long as the action may run: a
	// CAS that stalls ends the action as timed out instead of holding a
	// slot of the worker forever. (FUSE inputs arrive while the command
	// runs, within its own timeout.)
	fetchCtx, cancelFetch := context.WithTimeout(ctx, max(task.GetTimeout().AsDuration(), minFetchTimeout))
	defer cancelFetch()
	var tr *fuseinput.Tree
	if r.fuse != nil {
		// The tree reads its outputs' directories with this context
		// after the action too: the task's, not the fetch deadline's.
		tr, err = r.prepareFUSE(ctx, dir, rootDigest, cmd, cmdDigest, store)
		if err != nil {
			return nil, err
		}
		defer tr.Close()
	} else {
		if _, err := inputs.Materialize(fetchCtx, inputs.Source{Directories: store, Files: r.cache}, rootDigest, root); err != nil {
			return nil, fmt.Errorf("fetch inputs: %w", err)
		}
		if err := inputs.PrepareOutputs(root, cmd, r.opts.UID, r.opts.GID); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "outputs: %v", err)
		}
	}
	md.InputFetchCompletedTimestamp = timestamppb.Now()

	stdout, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	env := make([]string, 0, len(cmd.GetEnvironmentVariables()))
	for _, v := range cmd.GetEnvironmentVariables() {
		env = append(env, v.GetName()+"="+v.GetValue())
	}
	platform := action.GetPlatform()
	if len(platform.GetProperties()) == 0 {
		platform = cmd.GetPlatform()
	}
	spec := sandbox.Spec{
		ExecRoot: root, WorkDir: cmd.GetWorkingDirectory(), Args: cmd.GetArguments(), Env: env,
		Network: property(platform, "network") == "on", Timeout: task.GetTimeout().AsDuration(),
		Stdout: stdout, Stderr: stderr, UID: r.opts.UID, GID: r.opts.GID,
	}
	if tr != nil {
		spec.ExecRoot, spec.FUSE = "", tr.Serve
	}
	md.ExecutionStartTimestamp = timestamppb.Now()
	res, err := sandbox.Run(ctx, spec)
	md.ExecutionCompletedTimestamp = timestamppb.Now()
	if tr != nil {
		if cerr := tr.Close(); cerr != nil {
			r.opts.Logger.Error("fuse inputs", "task", task.GetTaskId(), "err", cerr)
		}
		// An input the action could not read (EIO) makes whatever it
		// did meaningless; a blob missing from the CAS goes back to the
		// client as FAILED_PRECONDITION, so that it uploads it again.
		if ferr := tr.Err(); ferr != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("fetch inputs: %w", ferr)
		}
	}
	switch {
	case errors.Is(err, sandbox.ErrInvalidSpec):
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	case errors.Is(err, sandbox.ErrStart):
		// The command cannot start (not found, not executable): the
		// action's own fault, reported like a failing command would be.
		fmt.Fprintf(stderr, "mound: %v\n", err)
		res = sandbox.Result{ExitCode: 127}
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) && !res.TimedOut:
		return nil, status.Error(codes.Canceled, "cancelled")
	case err != nil && !res.TimedOut:
		return nil, fmt.Errorf("sandbox: %w", err)
	}

	md.OutputUploadStartTimestamp = timestamppb.Now()
	var view outputs.View = tr
	if tr == nil {
		dv, err := outputs.OpenDirView(root)
		if err != nil {
			return nil, fmt.Errorf("collect outputs: %w", err)
		}
		defer dv.Close()
		view = dv
	}
	result, err := outputs.Collect(ctx, view, cmd, store)
	if err != nil {
		return nil, fmt.Errorf("collect outputs: %w", err)
	}
	result.ExitCode = int32(res.ExitCode)
	for _, std := range []struct {
		file *os.File
		dst  **repb.Digest
	}{{stdout, &result.StdoutDigest}, {stderr, &result.StderrDigest}} {
		d, err := outputs.UploadFile(ctx, store, std.file.Name())
		if err != nil {
			return nil, fmt.Errorf("upload %s: %w", filepath.Base(std.file.Name()), err)
		}
		*std.dst = d.Proto()
	}
	md.OutputUploadCompletedTimestamp = timestamppb.Now()
	md.WorkerCompletedTimestamp = timestamppb.Now()
	if access, err := anypb.New(r.inputAccess(tr, cmdDigest)); err == nil {
		md.AuxiliaryMetadata = append(md.AuxiliaryMetadata, access)
	}
	result.ExecutionMetadata = md
	resp := &repb.ExecuteResponse{Result: result, Status: &spb.Status{}}
	if res.TimedOut {
		resp.Status = &spb.Status{Code: int32(codes.DeadlineExceeded), Message: fmt.Sprintf("action timed out after %v", task.GetTimeout().AsDuration())}
	}
	return resp, nil
}

// minFetchTimeout is the least time inputs get to arrive, for actions with
// tiny timeouts.
const minFetchTimeout = time.Minute

// prepareFUSE creates the action's lazy input tree, with its layer under
// dir, the output directories made, and the last read set of the same
// command being prefetched.
func (r *runner) prepareFUSE(ctx context.Context, dir string, root digest.Digest, cmd *repb.Command, cmdDigest digest.Digest, store *remote.Client) (*fuseinput.Tree, error) {
	dirs, err := inputs.OutputDirs(cmd)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "outputs: %v", err)
	}
	upper := filepath.Join(dir, "upper")
	if err := os.Mkdir(upper, 0o700); err != nil {
		return nil, err
	}
	tr, err := r.fuse.NewTree(ctx, fuseinput.TreeOptions{Root: root, Upper: upper, Directories: store, Prefetch: r.reads.get(cmdDigest)})
	if err != nil {
		return nil, fmt.Errorf("fetch inputs: %w", err)
	}
	for _, d := range dirs {
		if err := tr.MkdirAll(d.Name); err != nil {
			tr.Close()
			if errors.Is(err, cas.ErrNotFound) {
				return nil, fmt.Errorf("fetch inputs: %w", err)
			}
			return nil, status.Errorf(codes.InvalidArgument, "output %q: %v", d.Output, err)
		}
	}
	return tr, nil
}

// inputAccess is the InputAccess reported with the result: what the action
// read and changed, with FUSE inputs; how inputs were presented, always.
// It also keeps the read set for the command's next run.
func (r *runner) inputAccess(tr *fuseinput.Tree, cmdDigest digest.Digest) *workerpb.InputAccess {
	if tr == nil {
		return &workerpb.InputAccess{Inputs: string(InputsHardlink)}
	}
	a := tr.Access()
	r.reads.put(cmdDigest, a.Read)
	ia := &workerpb.InputAccess{
		Inputs: string(InputsFUSE), Passthrough: tr.Passthrough(),
		Read: a.Read, Missing: a.Missing, Listed: a.Listed, Written: a.Written, Created: a.Created,
		Deleted: a.Deleted, Chmodded: a.Chmodded,
		FetchBlocked: durationpb.New(a.FetchBlocked), Prefetched: int64(a.Prefetched),
	}
	for _, rn := range a.Renamed {
		ia.Renamed = append(ia.Renamed, &workerpb.Rename{From: rn.From, To: rn.To})
	}
	return ia
}

func property(p *repb.Platform, name string) string {
	for _, prop := range p.GetProperties() {
		if prop.GetName() == name {
			return prop.GetValue()
		}
	}
	return ""
}

// errorStatus turns a failure to run an action into the status of its
// ExecuteResponse. A blob missing from the CAS is FAILED_PRECONDITION with
// a MISSING violation, so the client uploads it and retries.
func errorStatus(err error) *spb.Status {
	var missing *cas.MissingError
	if errors.As(err, &missing) {
		pf := &errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{
			Type: "MISSING", Subject: "blobs/" + missing.Digest.String(),
		}}}
		st := status.New(codes.FailedPrecondition, err.Error())
		if withDetails, derr := st.WithDetails(pf); derr == nil {
			st = withDetails
		}
		return st.Proto()
	}
	if errors.Is(err, cas.ErrNotFound) || errors.Is(err, outputs.ErrWrongType) {
		return status.New(codes.FailedPrecondition, err.Error()).Proto()
	}
	if errors.Is(err, inputs.ErrInvalid) || errors.Is(err, inputs.ErrBadOutput) {
		return status.New(codes.InvalidArgument, err.Error()).Proto()
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.Unknown {
		msg := err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			return status.New(codes.DeadlineExceeded, msg).Proto()
		}
		return status.New(codes.Internal, strings.TrimSpace(msg)).Proto()
	}
	return st.Proto()
}
