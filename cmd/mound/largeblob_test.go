package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"

	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/resource"
)

// stream yields n pseudo-random bytes from seed without holding them.
func stream(seed uint64, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{byte(seed)}), n)
}

// peakRSS reads a process's peak resident set size in KiB.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// TestHugeUploadKeepsMemoryFlat streams a 4 GiB blob through ByteStream and
// checks the server's peak memory stays far below the blob's size.
func TestHugeUploadKeepsMemoryFlat(t *testing.T) {
	const size = 4 << 30
	const seed = 42
	d, err := digest.OfReader(stream(seed, size))
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn := dial(t, srv.addr)
	bs := bspb.NewByteStreamClient(conn)
	w, err := bs.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src := stream(seed, size)
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := io.ReadFull(src, buf); err != nil {
			t.Fatal(err)
		}
		req := &bspb.WriteRequest{WriteOffset: off, Data: buf, FinishWrite: off+int64(len(buf)) == size}
		if off == 0 {
			req.ResourceName = resource.WriteName("", "huge", d, resource.Identity)
		}
		if err := w.Send(req); err != nil {
			t.Fatalf("send at %d: %v", off, err)
		}
	}
	resp, err := w.CloseAndRecv()
	if err != nil || resp.CommittedSize != size {
		t.Fatalf("upload: %v, %v", resp, err)
	}
	const limitKiB = 512 << 10 // an eighth of the blob: flat, not proportional
	if peak := peakRSS(t, srv.cmd.Process.Pid); peak > limitKiB {
		t.Errorf("server peak RSS %d MiB while receiving a 4 GiB blob; want under %d MiB", peak>>10, limitKiB>>10)
	} else {
		t.Logf("server peak RSS %d MiB while receiving a 4 GiB blob", peak>>10)
	}
	miss, err := repb.NewContentAddressableStorageClient(conn).FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{d.Proto()}})
	if err != nil || len(miss.MissingBlobDigests) != 0 {
		t.Fatalf("blob missing after upload: %v, %v", miss, err)
	}
	// Read the last MiB back by offset.
	r, err := bs.Read(ctx, &bspb.ReadRequest{ResourceName: resource.ReadName("", d, resource.Identity), ReadOffset: size - 1<<20})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	for {
		msg, err := r.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got.Write(msg.Data)
	}
	tail := stream(seed, size)
	io.CopyN(io.Discard, tail, size-1<<20)
	want, _ := io.ReadAll(tail)
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("last MiB read back differs (%d bytes)", got.Len())
	}
	srv.kill(syscall.SIGTERM)
}
