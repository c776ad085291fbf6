package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mound-build/mound/cas/badgerstore"
	"github.com/mound-build/mound/cas/digest"
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
