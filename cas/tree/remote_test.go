package tree

import (
	"path/filepath"
	"testing"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/cas/remote"
	"github.com/mound-build/mound/cas/storetest"
	"github.com/mound-build/mound/server"
)

// TestRoundTripRemote moves a tree through a mound server over gRPC, so
// that small blobs go in batches (cas.BatchGetter included) and large ones
// through ByteStream.
func TestRoundTripRemote(t *testing.T) {
	ctx := storetest.Context(t)
	mem := memstore.New()
	conn := storetest.StartServer(t, server.Options{Blobs: mem, Actions: mem})
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
	storetest.CompareTrees(t, src, dst)
}
