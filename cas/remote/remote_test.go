package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/cas/storetest"
	"github.com/mound-build/mound/server"
)

// rpcCounts counts the RPCs a connection starts, by full method name.
type rpcCounts struct {
	mu sync.Mutex
	n  map[string]int // guarded by mu
}

func (c *rpcCounts) add(method string) {
	c.mu.Lock()
	c.n[method]++
	c.mu.Unlock()
}

func (c *rpcCounts) get(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method]
}

func (c *rpcCounts) reset() {
	c.mu.Lock()
	c.n = map[string]int{}
	c.mu.Unlock()
}

const (
	batchUpdate = "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs"
	batchRead   = "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchReadBlobs"
	findMissing = "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs"
	bsWrite     = "/google.bytestream.ByteStream/Write"
	bsRead      = "/google.bytestream.ByteStream/Read"
)

// countRPCs returns dial options that count the RPCs a connection starts
// into counts.
func countRPCs(counts *rpcCounts) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			counts.add(method)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			counts.add(method)
			return streamer(ctx, desc, cc, method, opts...)
		}),
	}
}

// startServer runs a mound server on blobs (and a fresh action cache) over
// bufconn and returns a client of it; both end with the test.
func startServer(t *testing.T, blobs cas.BlobStore, opts Options) (*Client, *rpcCounts) {
	t.Helper()
	counts := &rpcCounts{n: map[string]int{}}
	conn := storetest.StartServer(t, server.Options{Blobs: blobs, Actions: memstore.New()}, countRPCs(counts)...)
	c, err := New(conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c, counts
}

// remoteStore is the client with the server's memstore behind it, so the
// suite's action cache test can provide the blob its result references.
type remoteStore struct {
	*Client
}

func newRemoteStore(t *testing.T, opts Options) storetest.Store {
	mem := memstore.New()
	// The suite stores an ActionResult whose stdout is "out". A mound
	// server reports results with missing outputs as misses
	// (cas.CompleteActionCache), so the blob must exist.
	out := []byte("out")
	storetest.Put(t, mem, out)
	c, _ := startServer(t, mem, opts)
	return remoteStore{c}
}

// TestConformance runs the store suite through a server: blobs up to the
// server's batch limit go in batches, the large ones (5 MiB, above the
// limit) through ByteStream.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return newRemoteStore(t, Options{}) }, 5<<20)
}

// TestConformanceByteStream runs the suite with a tiny batch limit, so that
// most blobs take the ByteStream path.
func TestConformanceByteStream(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return newRemoteStore(t, Options{MaxBatchBytes: 64})
	}, 300<<10)
}

func TestInstance(t *testing.T) {
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New without a connection succeeded")
	}
	lis := bufconn.Listen(1 << 10)
	defer lis.Close()
	conn := storetest.DialBufconn(t, lis)
	if _, err := New(conn, Options{Instance: "a/blobs/b"}); err == nil {
		t.Error("New with a reserved instance segment succeeded")
	}
}

func TestPutBatchPacking(t *testing.T) {
	ctx := storetest.Context(t)
	mem := memstore.New()
	c, counts := startServer(t, mem, Options{MaxBatchBytes: 1000})
	var blobs []cas.Blob
	for range 5 {
		data := storetest.Random(400)
		blobs = append(blobs, cas.Blob{Digest: digest.OfBytes(data), Data: data})
	}
	large := storetest.Random(3 << 20)
	blobs = append(blobs, cas.Blob{Digest: digest.OfBytes(large), Data: large})
	blobs = append(blobs, blobs[0], cas.Blob{Digest: digest.Empty})
	bad := cas.Blob{Digest: digest.OfBytes([]byte("x")), Data: []byte("y")}
	badCopy := cas.Blob{Digest: blobs[0].Digest, Data: []byte("not the content")}
	blobs = append(blobs, bad, badCopy)
	if _, err := c.maxBatchBlob(ctx); err != nil {
		t.Fatal(err)
	}
	counts.reset()
	errs := c.PutBatch(ctx, blobs)
	for i, err := range errs[:len(errs)-2] {
		if err != nil {
			t.Errorf("blob %d: %v", i, err)
		}
	}
	for _, err := range errs[len(errs)-2:] {
		if !errors.Is(err, digest.ErrMismatch) {
			t.Errorf("mismatched blob: %v, want ErrMismatch", err)
		}
	}
	// 5 blobs of 400 bytes under a limit of 1000: batches of 2, 2 and 1.
	if n := counts.get(batchUpdate); n != 3 {
		t.Errorf("%d BatchUpdateBlobs, want 3", n)
	}
	if n := counts.get(bsWrite); n != 1 {
		t.Errorf("%d ByteStream writes, want 1 (the large blob)", n)
	}
	if m, _ := mem.FindMissing(ctx, []digest.Digest{bad.Digest}); len(m) != 1 {
		t.Error("the mismatched blob was stored")
	}

	counts.reset()
	absent := digest.OfBytes([]byte("absent"))
	ds := []digest.Digest{blobs[0].Digest, absent, blobs[5].Digest, blobs[1].Digest, digest.Empty, blobs[0].Digest}
	data, errs := c.GetBatch(ctx, ds)
	for i, d := range ds {
		if d == absent {
			if !errors.Is(errs[i], cas.ErrNotFound) {
				t.Errorf("GetBatch of an absent blob: %v, want ErrNotFound", errs[i])
			}
			continue
		}
		if errs[i] != nil || digest.OfBytes(data[i]) != d {
			t.Errorf("GetBatch %d (%v): %d bytes, %v", i, d, len(data[i]), errs[i])
		}
	}
	if n := counts.get(bsRead); n != 1 {
		t.Errorf("%d ByteStream reads, want 1 (the large blob)", n)
	}
	if n := counts.get(batchRead); n != 1 {
		t.Errorf("%d BatchReadBlobs, want 1 (806 bytes of small blobs)", n)
	}
}

func TestFindMissingChunks(t *testing.T) {
	ctx := storetest.Context(t)
	mem := memstore.New()
	c, counts := startServer(t, mem, Options{})
	var ds, want []digest.Digest
	for i := range 2*maxFindMissingDigests + 10 {
		data := []byte(strings.Repeat("x", i+1))
		d := digest.OfBytes(data)
		ds = append(ds, d)
		if i%3 == 0 {
			if err := mem.Put(ctx, d, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
		} else {
			want = append(want, d)
		}
	}
	ds = append(ds, ds[1], digest.Empty)
	got, err := c.FindMissing(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("FindMissing returned %d digests, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("FindMissing[%d] = %v, want %v (order of the request)", i, got[i], want[i])
		}
	}
	if n := counts.get(findMissing); n != 3 {
		t.Errorf("%d FindMissingBlobs requests, want 3", n)
	}
}

func TestNotFound(t *testing.T) {
	ctx := storetest.Context(t)
	c, _ := startServer(t, memstore.New(), Options{MaxBatchBytes: 100})
	for _, size := range []int{10, 1000} { // batch and ByteStream
		d := digest.OfBytes(storetest.Random(size))
		_, err := c.Get(ctx, d, 0)
		if !errors.Is(err, cas.ErrNotFound) {
			t.Fatalf("Get of an absent %d-byte blob: %v, want ErrNotFound", size, err)
		}
		if want := "blob " + d.String() + " not found on passthrough:///bufconn"; err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
		var me *cas.MissingError
		if !errors.As(err, &me) || me.Digest != d {
			t.Errorf("error %v does not hold a cas.MissingError naming %v", err, d)
		}
	}
}

// corruptStore returns every blob with its last byte changed, or cut short,
// as a broken or hostile server would.
type corruptStore struct {
	cas.BlobStore
	truncate bool
}

func (s corruptStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	r, err := s.BlobStore.Get(ctx, d, offset)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if s.truncate {
		b = b[:len(b)-1]
	} else {
		b[len(b)-1] ^= 1
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func TestCorruptServer(t *testing.T) {
	for _, truncate := range []bool{false, true} {
		ctx := storetest.Context(t)
		mem := memstore.New()
		c, _ := startServer(t, corruptStore{BlobStore: mem, truncate: truncate}, Options{MaxBatchBytes: 1000})
		small, large := storetest.Random(100), storetest.Random(3<<20+5)
		for _, data := range [][]byte{small, large} {
			d := digest.OfBytes(data)
			if err := mem.Put(ctx, d, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			b, err := cas.ReadAll(ctx, c, d)
			if truncate && len(data) == len(small) {
				// The server's own BatchReadBlobs notices a short blob.
				if err == nil {
					t.Errorf("ReadAll of a truncated %d-byte blob returned %d bytes", len(data), len(b))
				}
				continue
			}
			if !errors.Is(err, digest.ErrMismatch) {
				t.Errorf("ReadAll of a corrupted %d-byte blob (truncated: %v): %d bytes, %v; want ErrMismatch", len(data), truncate, len(b), err)
			}
			r, err := c.Get(ctx, d, 0)
			if err == nil {
				_, err = io.Copy(io.Discard, r)
				r.Close()
			}
			if err == nil {
				t.Errorf("Get and io.Copy of a corrupted %d-byte blob succeeded", len(data))
			}
		}
	}
}

func TestCanceled(t *testing.T) {
	c, _ := startServer(t, memstore.New(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.FindMissing(ctx, []digest.Digest{digest.OfBytes([]byte("x"))})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("FindMissing with a cancelled context: %v", err)
	}
	if err := c.Put(ctx, digest.OfBytes([]byte("x")), strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context: %v", err)
	}
}
