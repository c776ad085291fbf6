package workerd_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/scheduler"
	"github.com/mound-build/mound/scheduler/workerpb"
	"github.com/mound-build/mound/server"
	"github.com/mound-build/mound/workerd"
	"github.com/mound-build/mound/workerd/sandbox"
)

func TestMain(m *testing.M) {
	sandbox.RunInitIfRequested()
	os.Exit(m.Run())
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// cluster is a mound server with one in-process worker.
type cluster struct {
	store *memstore.Store
	conn  *grpc.ClientConn
	done  chan error // Run's result
	stop  context.CancelFunc
	close func() // stops the worker and the server; also at cleanup
}

// clusterOptions vary a cluster.
type clusterOptions struct {
	inputs workerd.InputMode
	// blobs, when set, is what the server serves instead of the store
	// (a store that loses blobs, say).
	blobs cas.BlobStore
	// log receives the worker's log; nil discards it.
	log *slog.Logger
	// jobs is the worker's --jobs; 0 means 2.
	jobs int
	// store, when set, is the CAS and AC to use (clusters sharing
	// uploaded trees).
	store *memstore.Store
	// noPassthrough turns FUSE passthrough off.
	noPassthrough bool
}

// eachInputMode runs test with a cluster whose worker hardlinks inputs and
// with one that serves them through FUSE. The worker must log no error:
// a FUSE server that outlived its sandbox would (a timed-out action, say).
func eachInputMode(t *testing.T, test func(t *testing.T, c *cluster)) {
	for _, mode := range []workerd.InputMode{workerd.InputsHardlink, workerd.InputsFUSE} {
		t.Run(string(mode), func(t *testing.T) {
			var log syncBuffer
			c := newCluster(t, clusterOptions{inputs: mode, log: slog.New(slog.NewTextHandler(&log, nil))})
			test(t, c)
			c.close()
			if strings.Contains(log.String(), "level=ERROR") {
				t.Errorf("the worker logged errors:\n%s", log.String())
			}
		})
	}
}

func newCluster(t testing.TB, o clusterOptions) *cluster {
	t.Helper()
	store := o.store
	if store == nil {
		store = memstore.New()
	}
	var blobs cas.BlobStore = store
	if o.blobs != nil {
		blobs = o.blobs
	}
	if o.log == nil {
		o.log = quiet
	}
	if o.jobs == 0 {
		o.jobs = 2
	}
	sched := scheduler.New(scheduler.Options{Logger: quiet})
	srv, err := server.New(server.Options{Blobs: blobs, Actions: store, Scheduler: sched, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeGRPC(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	w, err := workerd.New(workerd.Options{Conn: conn, Name: "test-worker", Jobs: o.jobs, Dir: t.TempDir(), Logger: o.log, Inputs: o.inputs, NoPassthrough: o.noPassthrough})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{store: store, conn: conn, done: make(chan error, 1), stop: cancel}
	go func() { c.done <- w.Run(ctx) }()
	var once sync.Once
	c.close = func() {
		once.Do(func() {
			cancel()
			<-c.done
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Stop(ctx)
			sched.Close()
			conn.Close()
		})
	}
	t.Cleanup(c.close)
	// Wait until the worker has connected.
	admin := workerpb.NewAdminClient(conn)
	deadline := time.After(20 * time.Second)
	for {
		resp, err := admin.ListWorkers(context.Background(), &workerpb.ListWorkersRequest{})
		if err == nil && len(resp.Workers) == 1 {
			return c
		}
		select {
		case <-deadline:
			t.Fatalf("worker did not connect: %v %v", resp, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (c *cluster) put(t testing.TB, data []byte) digest.Digest {
	d := digest.OfBytes(data)
	if errs := cas.PutBatch(context.Background(), c.store, []cas.Blob{{Digest: d, Data: data}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	return d
}

func (c *cluster) putMsg(t testing.TB, m proto.Message) digest.Digest {
	b, _, err := digest.OfMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	return c.put(t, b)
}

// execute runs cmd with one input file and returns the final response.
func (c *cluster) execute(t testing.TB, cmd *repb.Command, timeout time.Duration) *repb.ExecuteResponse {
	t.Helper()
	in := c.put(t, []byte("input content\n"))
	root := c.putMsg(t, &repb.Directory{Files: []*repb.FileNode{{Name: "in.txt", Digest: in.Proto()}}})
	return c.executeIn(t, root, cmd, timeout)
}

// executeIn runs cmd on the input root root and returns the final response.
func (c *cluster) executeIn(t testing.TB, root digest.Digest, cmd *repb.Command, timeout time.Duration) *repb.ExecuteResponse {
	t.Helper()
	action := &repb.Action{CommandDigest: c.putMsg(t, cmd).Proto(), InputRootDigest: root.Proto()}
	if timeout > 0 {
		action.Timeout = durationpb.New(timeout)
	}
	ad := c.putMsg(t, action)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := repb.NewExecutionClient(c.conn).Execute(ctx, &repb.ExecuteRequest{ActionDigest: ad.Proto(), SkipCacheLookup: true})
	if err != nil {
		t.Fatal(err)
	}
	var last *longrunningpb.Operation
	for {
		op, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		last = op
	}
	resp := &repb.ExecuteResponse{}
	if err := last.GetResponse().UnmarshalTo(resp); err != nil {
		t.Fatalf("final operation %v: %v", last, err)
	}
	return resp
}

func (c *cluster) read(t testing.TB, p *repb.Digest) string {
	t.Helper()
	d, err := digest.FromProto(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cas.ReadAll(context.Background(), c.store, d)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWorkerRunsAction(t *testing.T) { eachInputMode(t, testWorkerRunsAction) }

func testWorkerRunsAction(t *testing.T, c *cluster) {
	resp := c.execute(t, &repb.Command{
		Arguments:            []string{"sh", "-c", "tr a-z A-Z < in.txt > out/result.txt; echo to stdout; echo to stderr >&2; id -u"},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin:/bin"}},
		OutputFiles:          []string{"out/result.txt"},
	}, 0)
	if resp.GetStatus().GetCode() != 0 || resp.Result.GetExitCode() != 0 {
		t.Fatalf("response %v", resp)
	}
	if len(resp.Result.OutputFiles) != 1 || c.read(t, resp.Result.OutputFiles[0].Digest) != "INPUT CONTENT\n" {
		t.Fatalf("outputs %v", resp.Result.OutputFiles)
	}
	stdout := c.read(t, resp.Result.StdoutDigest)
	if !strings.HasPrefix(stdout, "to stdout\n") || strings.HasSuffix(stdout, "\n0\n") {
		t.Errorf("stdout %q (the action must not run as root)", stdout)
	}
	if got := c.read(t, resp.Result.StderrDigest); got != "to stderr\n" {
		t.Errorf("stderr %q", got)
	}
	md := resp.Result.ExecutionMetadata
	if md.GetWorker() != "test-worker" || md.GetExecutionStartTimestamp() == nil || md.GetOutputUploadCompletedTimestamp() == nil {
		t.Errorf("metadata %v", md)
	}
}

func TestWorkerTimeoutKeepsPartialOutput(t *testing.T) {
	eachInputMode(t, testWorkerTimeoutKeepsPartialOutput)
}

func testWorkerTimeoutKeepsPartialOutput(t *testing.T, c *cluster) {
	start := time.Now()
	resp := c.execute(t, &repb.Command{Arguments: []string{"/bin/sh", "-c", "echo started; exec sleep 60"}}, time.Second)
	if codes.Code(resp.GetStatus().GetCode()) != codes.DeadlineExceeded {
		t.Fatalf("status %v, want DEADLINE_EXCEEDED", resp.GetStatus())
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("timeout took %v", time.Since(start))
	}
	if got := c.read(t, resp.GetResult().GetStdoutDigest()); got != "started\n" {
		t.Errorf("partial stdout %q", got)
	}
}

func TestWorkerMissingCommandIsReported(t *testing.T) {
	eachInputMode(t, testWorkerMissingCommandIsReported)
}

func testWorkerMissingCommandIsReported(t *testing.T, c *cluster) {
	resp := c.execute(t, &repb.Command{Arguments: []string{"no-such-program"}, EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/usr/bin:/bin"}}}, 0)
	if resp.GetStatus().GetCode() != 0 || resp.Result.GetExitCode() != 127 {
		t.Fatalf("response %v, want exit code 127", resp)
	}
	if got := c.read(t, resp.Result.StderrDigest); !strings.Contains(got, "no-such-program") {
		t.Errorf("stderr %q does not name the program", got)
	}
}

func TestDrainedWorkerLeaves(t *testing.T) {
	c := newCluster(t, clusterOptions{})
	admin := workerpb.NewAdminClient(c.conn)
	if _, err := admin.SetWorkerState(context.Background(), &workerpb.SetWorkerStateRequest{Name: "test-worker", State: workerpb.WorkerState_DRAINING}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		if err != nil {
			t.Fatalf("Run after drain: %v", err)
		}
		c.done <- nil // for the cleanup
	case <-time.After(20 * time.Second):
		t.Fatal("drained idle worker did not leave")
	}
}
