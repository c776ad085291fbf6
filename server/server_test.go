package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mound-build/mound/cas/badgerstore"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/scheduler"
	"github.com/mound-build/mound/scheduler/workerpb"
)

// TestMetrics checks that requests, hits, misses and the store's size reach
// /metrics.
func TestMetrics(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	srv, err := New(Options{Blobs: store, Actions: store, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeGRPC(lis)
	defer srv.Stop(context.Background())
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	data := []byte("counted")
	d := digest.OfBytes(data)
	cas := repb.NewContentAddressableStorageClient(conn)
	if _, err := cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d.Proto(), Data: data}}}); err != nil {
		t.Fatal(err)
	}
	cas.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{d.Proto(), digest.OfBytes([]byte("absent")).Proto()}})
	repb.NewActionCacheClient(conn).GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: d.Proto()})

	rec := httptest.NewRecorder()
	srv.HTTPHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`mound_grpc_requests_total{code="OK",method="/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs"} 1`,
		`mound_grpc_requests_total{code="NotFound",method="/build.bazel.remote.execution.v2.ActionCache/GetActionResult"} 1`,
		"mound_ac_misses_total 1",
		"mound_cas_find_missing_total 1",
		"mound_cas_find_present_total 1",
		`mound_cas_written_bytes_total{rpc="batch"} 7`,
		"mound_cas_blobs 1",
		"mound_cas_evictions_total 0",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestStopEndsWorkerSessions stops a server with a worker connected: the
// worker's session, a stream that never ends on its own, must not hold up
// the graceful stop, and the worker must be told to go elsewhere.
func TestStopEndsWorkerSessions(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// Heartbeats far apart: the silent test worker must not be lost
	// while Stop runs, which would end its session regardless.
	sched := scheduler.New(scheduler.Options{HeartbeatInterval: time.Hour, Logger: quiet})
	defer sched.Close()
	srv, err := New(Options{Blobs: store, Actions: store, Scheduler: sched, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeGRPC(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := workerpb.NewSchedulerClient(conn).Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	hello := &workerpb.Hello{Name: "w", Jobs: 1}
	if err := stream.Send(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Hello{Hello: hello}}); err != nil {
		t.Fatal(err)
	}
	if m, err := stream.Recv(); err != nil || m.GetWelcome() == nil {
		t.Fatalf("Hello answered with %v, %v", m, err)
	}

	// Without the worker's session ending, Stop would wait all of
	// stopBound and then cut every RPC off.
	const stopBound = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), stopBound)
	defer cancel()
	srv.Stop(ctx)
	if ctx.Err() != nil {
		t.Errorf("Stop with a worker connected took all of its %v", stopBound)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("the worker's session ended with %v, want UNAVAILABLE (reconnect)", err)
	}
	if err := <-served; err != nil {
		t.Errorf("ServeGRPC: %v", err)
	}
}
