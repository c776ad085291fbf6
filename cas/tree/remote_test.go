package tree

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/cas/remote"
	"github.com/mound-build/mound/server"
)

// TestRoundTripRemote moves a tree through a mound server over gRPC, so
// that small blobs go in batches (cas.BatchGetter included) and large ones
// through ByteStream.
func TestRoundTripRemote(t *testing.T) {
	ctx := testContext(t)
	mem := memstore.New()
	srv, err := server.New(server.Options{Blobs: mem, Actions: mem, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	served := make(chan error, 1)
	go func() { served <- srv.ServeGRPC(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		srv.Stop(ctx)
		<-served
	})
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c, err := remote.New(conn, remote.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var _ cas.BatchGetter = c

	src := t.TempDir()
	makeTree(t, src)
	stats, err := Upload(ctx, c, src)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Upload(ctx, c, src)
	if err != nil || again.Uploaded != 0 {
		t.Fatalf("second upload sent %d blobs, %v", again.Uploaded, err)
	}
	tr, err := Fetch(ctx, c, stats.Root)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Files != int64(stats.Files) || tr.Bytes != stats.Bytes || tr.FetchBytes >= tr.Bytes {
		t.Errorf("fetched tree: %d files, %d bytes (%d distinct); uploaded %d files, %d bytes", tr.Files, tr.Bytes, tr.FetchBytes, stats.Files, stats.Bytes)
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := tr.Write(ctx, c, dst); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, dst)
}
