package main

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/resource"
)

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestSIGKILLMidUpload kills the server while a large upload is half done,
// restarts it on the same data directory, and checks that the blob is not
// visible, nothing half-written remains, and the upload then succeeds.
func TestSIGKILLMidUpload(t *testing.T) {
	data := t.TempDir()
	blob := make([]byte, 32<<20)
	rand.Read(blob)
	d := digest.OfBytes(blob)
	small := []byte("a small blob that was uploaded in full before the crash")
	ds := digest.OfBytes(small)

	srv := startServer(t, data)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := dial(t, srv.addr)
	cas := repb.NewContentAddressableStorageClient(conn)
	if _, err := cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: ds.Proto(), Data: small}}}); err != nil {
		t.Fatal(err)
	}
	bs := bspb.NewByteStreamClient(conn)
	name := resource.WriteName("", "7f6bd3a4-0f65-4b0e-9a39-1d1f0f0b6a11", d, resource.Identity)
	w, err := bs.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 1 << 20
	half := int64(len(blob) / 2)
	for off := int64(0); off < half; off += chunk {
		req := &bspb.WriteRequest{WriteOffset: off, Data: blob[off : off+chunk]}
		if off == 0 {
			req.ResourceName = name
		}
		if err := w.Send(req); err != nil {
			t.Fatalf("send at %d: %v", off, err)
		}
	}
	// Wait until the server holds the half, so the kill lands mid-upload.
	for {
		st, err := bs.QueryWriteStatus(ctx, &bspb.QueryWriteStatusRequest{ResourceName: name})
		if err != nil {
			t.Fatal(err)
		}
		if st.CommittedSize >= half {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("server never received half the upload (committed %d)", st.CommittedSize)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := srv.kill(syscall.SIGKILL); err == nil {
		t.Fatal("server exited cleanly on SIGKILL?")
	}
	conn.Close()

	srv = startServer(t, data)
	conn = dial(t, srv.addr)
	cas = repb.NewContentAddressableStorageClient(conn)
	resp, err := cas.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{d.Proto(), ds.Proto()}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.MissingBlobDigests) != 1 || resp.MissingBlobDigests[0].Hash != d.Hash.String() {
		t.Fatalf("after the crash, missing = %v; want only the interrupted blob", resp.MissingBlobDigests)
	}
	if left, _ := os.ReadDir(filepath.Join(data, "tmp")); len(left) != 0 {
		t.Errorf("partial upload left in tmp/: %v", left)
	}
	bs = bspb.NewByteStreamClient(conn)
	// The interrupted upload is forgotten: the client starts again at 0.
	if st, err := bs.QueryWriteStatus(ctx, &bspb.QueryWriteStatusRequest{ResourceName: name}); status.Code(err) != codes.NotFound {
		t.Fatalf("QueryWriteStatus after restart = %v, %v; want NOT_FOUND", st, err)
	}
	w, err = bs.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < int64(len(blob)); off += chunk {
		req := &bspb.WriteRequest{WriteOffset: off, Data: blob[off : off+chunk], FinishWrite: off+chunk == int64(len(blob))}
		if off == 0 {
			req.ResourceName = name
		}
		if err := w.Send(req); err != nil {
			t.Fatalf("send at %d: %v", off, err)
		}
	}
	wr, err := w.CloseAndRecv()
	if err != nil || wr.CommittedSize != d.Size {
		t.Fatalf("upload after restart: %v, %v", wr, err)
	}
	r, err := bs.Read(ctx, &bspb.ReadRequest{ResourceName: resource.ReadName("", d, resource.Identity)})
	if err != nil {
		t.Fatal(err)
	}
	v := digest.NewVerifier(d)
	for {
		msg, err := r.Recv()
		if err != nil {
			break
		}
		v.Write(msg.Data)
	}
	if err := v.Check(); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if err := srv.kill(syscall.SIGTERM); err != nil {
		t.Errorf("server did not stop cleanly on SIGTERM: %v", err)
	}
}
