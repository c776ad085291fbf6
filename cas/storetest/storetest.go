package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// Store is what the suite tests.
type Store interface {
	cas.BlobStore
	cas.ActionCache
}

// Run runs the suite. newStore returns an empty store, closed by the test's
// cleanup. largeSize is a blob size the store handles on its large-blob path
// (for stores without one, any size of a few hundred KiB).
func Run(t *testing.T, newStore func(t *testing.T) Store, largeSize int) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"PutGet", testPutGet},
		{"Offsets", testOffsets},
		{"Missing", testMissing},
		{"Empty", testEmpty},
		{"Mismatch", testMismatch},
		{"ReadError", testReadError},
		{"FindMissing", testFindMissing},
		{"ConcurrentSameDigest", testConcurrentSameDigest},
		{"PutBatch", testPutBatch},
		{"ActionCache", testActionCache},
		{"Zstd", testZstd},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
	t.Run("GetBatch", func(t *testing.T) { testGetBatch(t, newStore(t), largeSize) })
	t.Run("Large", func(t *testing.T) {
		s := newStore(t)
		data := Random(largeSize)
		bad := append([]byte{}, data...)
		bad[len(bad)-1] ^= 1
		if err := s.Put(context.Background(), digest.OfBytes(data), bytes.NewReader(bad)); !errors.Is(err, digest.ErrMismatch) {
			t.Fatalf("Put of corrupted large blob: %v, want ErrMismatch", err)
		}
		d := Put(t, s, data)
		checkGet(t, s, d, 0, data)
		checkGet(t, s, d, int64(largeSize/2), data[largeSize/2:])
	})
	t.Run("LargeZstd", func(t *testing.T) {
		s := newStore(t)
		testZstdData(t, s, Compressible(largeSize))
	})
}

// Random returns n random bytes, different on every call.
func Random(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return b
}

// Compressible returns n bytes of text-like data that zstd shrinks a lot.
func Compressible(n int) []byte {
	var buf bytes.Buffer
	for i := 0; buf.Len() < n; i++ {
		fmt.Fprintf(&buf, "line %d of a compressible blob %d\n", i, rand.IntN(50))
	}
	return buf.Bytes()[:n]
}

// Put stores data in s and returns its digest; an error fails the test.
func Put(t testing.TB, s cas.BlobPutter, data []byte) digest.Digest {
	t.Helper()
	d := digest.OfBytes(data)
	if err := s.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
		t.Fatalf("Put %v: %v", d, err)
	}
	return d
}

// PutMessage stores m, serialized deterministically, in s and returns its
// digest; an error fails the test.
func PutMessage(t testing.TB, s cas.BlobPutter, m proto.Message) digest.Digest {
	t.Helper()
	b, _, err := digest.OfMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	return Put(t, s, b)
}

func checkGet(t *testing.T, s cas.BlobGetter, d digest.Digest, offset int64, want []byte) {
	t.Helper()
	r, err := s.Get(context.Background(), d, offset)
	if err != nil {
		t.Fatalf("Get %v at %d: %v", d, offset, err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %v: %v", d, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get %v at %d: got %d bytes, want %d (content differs)", d, offset, len(got), len(want))
	}
}

func testPutGet(t *testing.T, s Store) {
	data := Random(1000)
	d := Put(t, s, data)
	checkGet(t, s, d, 0, data)
	Put(t, s, data) // again: already present
	checkGet(t, s, d, 0, data)
}

func testOffsets(t *testing.T, s Store) {
	data := Random(100)
	d := Put(t, s, data)
	checkGet(t, s, d, 40, data[40:])
	checkGet(t, s, d, 100, nil)
	if _, err := s.Get(context.Background(), d, 101); !errors.Is(err, digest.ErrInvalid) {
		t.Fatalf("Get past the end: %v, want ErrInvalid", err)
	}
}

func testMissing(t *testing.T, s Store) {
	d := digest.OfBytes(Random(10))
	if _, err := s.Get(context.Background(), d, 0); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("Get of absent blob: %v, want ErrNotFound", err)
	}
	// The same hash with another size is another blob.
	data := Random(10)
	Put(t, s, data)
	other := digest.Digest{Hash: digest.OfBytes(data).Hash, Size: 11}
	if _, err := s.Get(context.Background(), other, 0); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("Get with wrong size: %v, want ErrNotFound", err)
	}
}

func testEmpty(t *testing.T, s Store) {
	checkGet(t, s, digest.Empty, 0, nil)
	if m, err := s.FindMissing(context.Background(), []digest.Digest{digest.Empty}); err != nil || len(m) != 0 {
		t.Fatalf("FindMissing(empty) = %v, %v", m, err)
	}
	if err := s.Put(context.Background(), digest.Empty, bytes.NewReader(nil)); err != nil {
		t.Fatalf("Put(empty): %v", err)
	}
	if err := s.Put(context.Background(), digest.Empty, bytes.NewReader([]byte("x"))); !errors.Is(err, digest.ErrMismatch) {
		t.Fatalf("Put(empty) with content: %v, want ErrMismatch", err)
	}
}

func testMismatch(t *testing.T, s Store) {
	data := Random(500)
	d := digest.OfBytes(data)
	for name, bad := range map[string][]byte{"short": data[:499], "long": append(append([]byte{}, data...), 1), "changed": Random(500)} {
		if err := s.Put(context.Background(), d, bytes.NewReader(bad)); !errors.Is(err, digest.ErrMismatch) {
			t.Errorf("Put %s content: %v, want ErrMismatch", name, err)
		}
	}
	if m, _ := s.FindMissing(context.Background(), []digest.Digest{d}); len(m) != 1 {
		t.Fatalf("blob visible after failed puts")
	}
}

type failingReader struct{ data []byte }

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, errors.New("connection reset")
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func testReadError(t *testing.T, s Store) {
	data := Random(300)
	d := digest.OfBytes(data)
	if err := s.Put(context.Background(), d, &failingReader{data: data[:200]}); err == nil {
		t.Fatal("Put with a failing reader succeeded")
	}
	if m, _ := s.FindMissing(context.Background(), []digest.Digest{d}); len(m) != 1 {
		t.Fatal("blob visible after an interrupted put")
	}
}

func testFindMissing(t *testing.T, s Store) {
	present := Put(t, s, Random(10))
	a, b := digest.OfBytes(Random(11)), digest.OfBytes(Random(12))
	got, err := s.FindMissing(context.Background(), []digest.Digest{a, present, b, a, digest.Empty})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != a || got[1] != b {
		t.Fatalf("FindMissing = %v, want [%v %v]", got, a, b)
	}
}

func testConcurrentSameDigest(t *testing.T, s Store) {
	data := Random(64 << 10)
	d := digest.OfBytes(data)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Put(context.Background(), d, bytes.NewReader(data))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	checkGet(t, s, d, 0, data)
}

func testPutBatch(t *testing.T, s Store) {
	good1, good2 := Random(100), Random(200)
	bad := cas.Blob{Digest: digest.OfBytes(Random(50)), Data: Random(50)}
	blobs := []cas.Blob{{Digest: digest.OfBytes(good1), Data: good1}, bad, {Digest: digest.OfBytes(good2), Data: good2}, {Digest: digest.OfBytes(good1), Data: good1}}
	errs := cas.PutBatch(context.Background(), s, blobs)
	if errs[0] != nil || errs[2] != nil || errs[3] != nil || !errors.Is(errs[1], digest.ErrMismatch) {
		t.Fatalf("PutBatch errors = %v", errs)
	}
	checkGet(t, s, blobs[0].Digest, 0, good1)
	checkGet(t, s, blobs[2].Digest, 0, good2)
	if m, _ := s.FindMissing(context.Background(), []digest.Digest{bad.Digest}); len(m) != 1 {
		t.Fatal("bad blob of a batch is visible")
	}

	// One digest three times, with wrong bytes around the right ones: the
	// right copy is stored, the wrong ones fail.
	right := Random(300)
	wrong := bytes.Clone(right)
	wrong[0] ^= 1
	d := digest.OfBytes(right)
	errs = cas.PutBatch(context.Background(), s, []cas.Blob{{Digest: d, Data: wrong}, {Digest: d, Data: right}, {Digest: d, Data: wrong}})
	if errs[1] != nil || !errors.Is(errs[0], digest.ErrMismatch) || !errors.Is(errs[2], digest.ErrMismatch) {
		t.Fatalf("PutBatch of a digest with wrong, right and wrong bytes: errors = %v", errs)
	}
	checkGet(t, s, d, 0, right)
}

// testGetBatch reads, with GetBatch when the store has it (cas.BatchGetter),
// blobs written together in one batch, in another order and with one
// twice, a large one, the empty blob and a missing one.
func testGetBatch(t *testing.T, s Store, largeSize int) {
	bg, ok := s.(cas.BatchGetter)
	if !ok {
		t.Skip("the store has no GetBatch")
	}
	ctx := context.Background()
	var blobs []cas.Blob
	for i := range 20 {
		data := Random(1 + i*97)
		blobs = append(blobs, cas.Blob{Digest: digest.OfBytes(data), Data: data})
	}
	for i, err := range cas.PutBatch(ctx, s, blobs) {
		if err != nil {
			t.Fatalf("PutBatch, blob %d: %v", i, err)
		}
	}
	large := Random(largeSize)
	missing := digest.OfBytes(Random(10))
	want := [][]byte{blobs[5].Data, large, blobs[0].Data, {}, blobs[19].Data, nil, blobs[5].Data}
	ds := []digest.Digest{blobs[5].Digest, Put(t, s, large), blobs[0].Digest, digest.Empty, blobs[19].Digest, missing, blobs[5].Digest}
	for i := 1; i < 19; i++ {
		if i != 5 {
			want = append(want, blobs[i].Data)
			ds = append(ds, blobs[i].Digest)
		}
	}
	got, errs := bg.GetBatch(ctx, ds)
	if len(got) != len(ds) || len(errs) != len(ds) {
		t.Fatalf("GetBatch of %d digests: %d results, %d errors", len(ds), len(got), len(errs))
	}
	for i, d := range ds {
		switch {
		case d == missing:
			if !errors.Is(errs[i], cas.ErrNotFound) {
				t.Errorf("GetBatch of a missing blob: %v, want ErrNotFound", errs[i])
			}
		case errs[i] != nil:
			t.Errorf("GetBatch %d (%v): %v", i, d, errs[i])
		case !bytes.Equal(got[i], want[i]):
			t.Errorf("GetBatch %d (%v): %d bytes, not the %d stored", i, d, len(got[i]), len(want[i]))
		}
	}
}

func testActionCache(t *testing.T, s Store) {
	ctx := context.Background()
	key := cas.ActionKey{Instance: "a", Action: digest.OfBytes(Random(20))}
	if _, err := s.GetActionResult(ctx, key); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("Get of unknown action: %v", err)
	}
	want := &repb.ActionResult{ExitCode: 3, StdoutDigest: digest.OfBytes([]byte("out")).Proto()}
	if err := s.UpdateActionResult(ctx, key, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetActionResult(ctx, key)
	if err != nil || !proto.Equal(got, want) {
		t.Fatalf("Get = %v, %v; want %v", got, err, want)
	}
	other := key
	other.Instance = "b"
	if _, err := s.GetActionResult(ctx, other); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("other instance sees the entry: %v", err)
	}
	want.ExitCode = 0
	if err := s.UpdateActionResult(ctx, key, want); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetActionResult(ctx, key); got.GetExitCode() != 0 {
		t.Fatal("update did not replace the entry")
	}
}

func testZstd(t *testing.T, s Store) {
	testZstdData(t, s, Compressible(20000))
}

// testZstdData stores data compressed (through ZstdPutter when the store has
// it) and reads it back both ways.
func testZstdData(t *testing.T, s Store, data []byte) {
	ctx := context.Background()
	d := digest.OfBytes(data)
	comp, err := io.ReadAll(cas.ZstdCompress(io.NopCloser(bytes.NewReader(data))))
	if err != nil {
		t.Fatal(err)
	}
	zp, ok := cas.BlobPutter(s).(cas.ZstdPutter)
	if !ok {
		Put(t, s, data)
	} else {
		bad := digest.OfBytes(append([]byte{1}, data...))
		if err := zp.PutZstd(ctx, bad, bytes.NewReader(comp)); !errors.Is(err, digest.ErrMismatch) {
			t.Fatalf("PutZstd with wrong digest: %v", err)
		}
		if err := zp.PutZstd(ctx, d, bytes.NewReader(comp[:len(comp)/2])); err == nil {
			t.Fatal("PutZstd of a truncated stream succeeded")
		}
		if err := zp.PutZstd(ctx, d, bytes.NewReader(comp)); err != nil {
			t.Fatalf("PutZstd: %v", err)
		}
	}
	checkGet(t, s, d, 0, data)
	checkGet(t, s, d, 7, data[7:])
	if zg, ok := cas.BlobGetter(s).(cas.ZstdGetter); ok {
		r, err := zg.GetZstd(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		z, err := cas.ZstdDecompress(r)
		if err != nil {
			t.Fatal(err)
		}
		defer z.Close()
		got, err := io.ReadAll(z)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("GetZstd round trip: %d bytes, %v", len(got), err)
		}
	}
}
