package blobcache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/cas/storetest"
)

// gatedStore is a remote CAS whose Gets each send on started, when set,
// then wait until gate is closed or the caller's context ends: a fetch
// held in progress.
type gatedStore struct {
	cas.BlobStore
	gate    chan struct{}
	started chan struct{}
}

func (g *gatedStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	if g.started != nil {
		g.started <- struct{}{}
	}
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.BlobStore.Get(ctx, d, offset)
}

func open(t *testing.T, dir string, max int64, remote cas.BlobGetter) *Cache {
	t.Helper()
	c, err := Open(Options{Dir: dir, MaxBytes: max, Remote: remote, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkFile fails unless name holds want with mode perm.
func checkFile(t *testing.T, name string, want []byte, perm os.FileMode) {
	t.Helper()
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s holds %q, want %q", name, got, want)
	}
	info, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode() != perm {
		t.Fatalf("%s has mode %v, want %v", name, info.Mode(), perm)
	}
}

func TestHitMissAndVariants(t *testing.T) {
	ctx := storetest.Context(t)
	mem := memstore.New()
	data := []byte("#!/bin/sh\necho hello\n")
	d := storetest.Put(t, mem, data)
	remote := storetest.NewCountingStore(mem)
	c := open(t, t.TempDir(), 1<<20, remote)

	p1, err := c.Path(ctx, d, false)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p1, data, 0o444)
	p2, err := c.Path(ctx, d, false)
	if err != nil || p2 != p1 {
		t.Fatalf("second Path = %q, %v; want %q", p2, err, p1)
	}
	px, err := c.Path(ctx, d, true)
	if err != nil {
		t.Fatal(err)
	}
	if px == p1 {
		t.Fatal("executable and plain variants share a file")
	}
	checkFile(t, px, data, 0o555)
	checkFile(t, p1, data, 0o444)
	if n := remote.Counts().Gets[d]; n != 1 {
		t.Fatalf("remote Gets = %d, want 1 (the executable variant is copied locally)", n)
	}
	s := c.Stats()
	want := Stats{Hits: 1, Misses: 2, BytesFetched: d.Size, BytesStored: 2 * d.Size, Files: 2}
	if s != want {
		t.Fatalf("Stats = %+v, want %+v", s, want)
	}
}

func TestEmptyBlobNeedsNoFetch(t *testing.T) {
	ctx := storetest.Context(t)
	remote := storetest.NewCountingStore(memstore.New())
	c := open(t, t.TempDir(), 1<<20, remote)
	for _, exec := range []bool{false, true} {
		p, err := c.Path(ctx, digest.Empty, exec)
		if err != nil {
			t.Fatal(err)
		}
		perm := os.FileMode(0o444)
		if exec {
			perm = 0o555
		}
		checkFile(t, p, nil, perm)
	}
	if n := remote.Counts().TotalGets(); n != 0 {
		t.Fatalf("remote Gets = %d, want 0", n)
	}
}

func TestMissingAndCorruptBlobs(t *testing.T) {
	ctx := storetest.Context(t)
	dir := t.TempDir()
	c := open(t, dir, 1<<20, corruptGetter{})
	absent := digest.OfBytes([]byte("absent"))
	_, err := c.Path(ctx, absent, false)
	var missing *cas.MissingError
	if !errors.Is(err, cas.ErrNotFound) || !errors.As(err, &missing) || missing.Digest != absent {
		t.Fatalf("Path of an absent blob: %v, want a cas.MissingError for %v", err, absent)
	}
	bad := digest.OfBytes([]byte("the real content"))
	if _, err := c.Path(ctx, bad, false); !errors.Is(err, digest.ErrMismatch) {
		t.Fatalf("Path of a corrupted blob: %v, want digest.ErrMismatch", err)
	}
	if s := c.Stats(); s.Files != 0 || s.BytesStored != 0 {
		t.Fatalf("after failures the cache holds %+v", s)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*", "fetch-*")); len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}

// corruptGetter has no blob but "the real content", which it serves wrong.
type corruptGetter struct{}

func (corruptGetter) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	if d == digest.OfBytes([]byte("the real content")) {
		return io.NopCloser(bytes.NewReader([]byte("the fake content"))), nil
	}
	return nil, &cas.MissingError{Digest: d}
}

// waitFor yields until cond holds: goroutines of the test reach a state
// that the cache reports, without sleeping.
func waitFor(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatal("condition never held")
		}
		runtime.Gosched()
	}
}

func TestConcurrentRequestsFetchOnce(t *testing.T) {
	ctx := storetest.Context(t)
	mem := memstore.New()
	data := bytes.Repeat([]byte("x"), 4096)
	d := storetest.Put(t, mem, data)
	gated := &gatedStore{BlobStore: mem, gate: make(chan struct{}), started: make(chan struct{}, 1)}
	remote := storetest.NewCountingStore(gated)
	c := open(t, t.TempDir(), 1<<20, remote)

	const n = 8
	paths := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		paths[0], errs[0] = c.Path(ctx, d, false)
	}()
	<-gated.started // the first request is inside the fetch
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths[i], errs[i] = c.Path(ctx, d, false)
		}()
	}
	waitFor(t, ctx, func() bool { return c.Stats().Waited == n-1 })
	close(gated.gate)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || paths[i] != paths[0] {
			t.Fatalf("request %d: %q, %v; want %q", i, paths[i], errs[i], paths[0])
		}
	}
	if got := remote.Counts().Gets[d]; got != 1 {
		t.Fatalf("remote Gets = %d, want 1", got)
	}
	checkFile(t, paths[0], data, 0o444)
}

func TestBothModesFetchOnce(t *testing.T) {
	ctx := storetest.Context(t)
	mem := memstore.New()
	data := []byte("used plain and executable")
	d := storetest.Put(t, mem, data)
	gated := &gatedStore{BlobStore: mem, gate: make(chan struct{}), started: make(chan struct{}, 2)}
	remote := storetest.NewCountingStore(gated)
	c := open(t, t.TempDir(), 1<<20, remote)

	type answer struct {
		path string
		err  error
	}
	plain, exec := make(chan answer, 1), make(chan answer, 1)
	go func() {
		p, err := c.Path(ctx, d, false)
		plain <- answer{p, err}
	}()
	<-gated.started
	go func() {
		p, err := c.Path(ctx, d, true)
		exec <- answer{p, err}
	}()
	waitFor(t, ctx, func() bool { return c.Stats().Misses == 2 })
	close(gated.gate)
	p, x := <-plain, <-exec
	if p.err != nil || x.err != nil {
		t.Fatalf("Path: %v, %v", p.err, x.err)
	}
	checkFile(t, p.path, data, 0o444)
	checkFile(t, x.path, data, 0o555)
	if n := remote.Counts().Gets[d]; n != 1 {
		t.Fatalf("remote Gets = %d, want 1", n)
	}
}

func TestWaiterSurvivesCancelledFetch(t *testing.T) {
	ctx := storetest.Context(t)
	mem := memstore.New()
	data := []byte("shared")
	d := storetest.Put(t, mem, data)
	gated := &gatedStore{BlobStore: mem, gate: make(chan struct{}), started: make(chan struct{}, 2)}
	remote := storetest.NewCountingStore(gated)
	c := open(t, t.TempDir(), 1<<20, remote)

	leaderCtx, cancelLeader := context.WithCancel(ctx)
	leaderErr := make(chan error, 1)
	go func() {
		_, err := c.Path(leaderCtx, d, false)
		leaderErr <- err
	}()
	<-gated.started
	waiter := make(chan error, 1)
	go func() {
		p, err := c.Path(ctx, d, false)
		if err == nil {
			_, err = os.Stat(p)
		}
		waiter <- err
	}()
	waitFor(t, ctx, func() bool { return c.Stats().Waited == 1 })
	cancelLeader()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v, want context.Canceled", err)
	}
	<-gated.started // the waiter fetches on its own
	close(gated.gate)
	if err := <-waiter; err != nil {
		t.Fatalf("waiter: %v", err)
	}
}

func TestEvictionKeepsLinkedFiles(t *testing.T) {
	ctx := storetest.Context(t)
	base := t.TempDir() // cache and links on one file system
	mem := memstore.New()
	blob := func(b byte) []byte { return bytes.Repeat([]byte{b}, 100) }
	a, b, cc := storetest.Put(t, mem, blob('a')), storetest.Put(t, mem, blob('b')), storetest.Put(t, mem, blob('c'))
	c := open(t, filepath.Join(base, "cache"), 250, mem)

	pa, err := c.Path(ctx, a, false)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := c.Path(ctx, b, false)
	if err != nil {
		t.Fatal(err)
	}
	linked := filepath.Join(base, "action-input")
	if err := os.Link(pb, linked); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Path(ctx, a, false); err != nil { // a is now more recent than b
		t.Fatal(err)
	}
	pc, err := c.Path(ctx, cc, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pb); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("least recently used blob still cached: %v", err)
	}
	for _, p := range []string{pa, pc} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("recently used blob evicted: %v", err)
		}
	}
	checkFile(t, linked, blob('b'), 0o444)
	s := c.Stats()
	if s.Evictions != 1 || s.BytesStored != 200 || s.Files != 2 {
		t.Fatalf("Stats = %+v, want 1 eviction, 200 bytes in 2 files", s)
	}
	if missing, _ := c.FindMissing(ctx, []digest.Digest{a, b, cc, b, digest.Empty}); len(missing) != 1 || missing[0] != b {
		t.Fatalf("FindMissing = %v, want [%v]", missing, b)
	}
}

func TestOversizedBlobIsServed(t *testing.T) {
	ctx := storetest.Context(t)
	mem := memstore.New()
	small, big := storetest.Put(t, mem, []byte("small")), storetest.Put(t, mem, bytes.Repeat([]byte("B"), 1000))
	c := open(t, t.TempDir(), 100, mem)
	if _, err := c.Path(ctx, small, false); err != nil {
		t.Fatal(err)
	}
	p, err := c.Path(ctx, big, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("blob larger than MaxBytes not served: %v", err)
	}
	if s := c.Stats(); s.Files != 1 || s.BytesStored != 1000 {
		t.Fatalf("Stats = %+v, want only the big blob", s)
	}
}

func TestRestartRebuildsIndex(t *testing.T) {
	ctx := storetest.Context(t)
	dir := t.TempDir()
	mem := memstore.New()
	a, b := storetest.Put(t, mem, []byte("first blob")), storetest.Put(t, mem, []byte("second blob!"))
	c := open(t, dir, 1<<20, mem)
	pa, err := c.Path(ctx, a, false)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := c.Path(ctx, b, true)
	if err != nil {
		t.Fatal(err)
	}
	// Debris of a crash: a fetch in progress and a truncated file.
	debris := filepath.Join(filepath.Dir(pa), "fetch-123")
	if err := os.WriteFile(debris, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := digest.OfBytes([]byte("never fetched"))
	truncated := c.path(key{other, false})
	if err := os.MkdirAll(filepath.Dir(truncated), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, []byte("never"), 0o444); err != nil {
		t.Fatal(err)
	}

	remote := storetest.NewCountingStore(mem)
	c2 := open(t, dir, 1<<20, remote)
	if s := c2.Stats(); s.Files != 2 || s.BytesStored != a.Size+b.Size {
		t.Fatalf("reopened Stats = %+v, want the 2 blobs", s)
	}
	if p, err := c2.Path(ctx, a, false); err != nil || p != pa {
		t.Fatalf("Path after restart = %q, %v", p, err)
	}
	if p, err := c2.Path(ctx, b, true); err != nil || p != pb {
		t.Fatalf("Path after restart = %q, %v", p, err)
	}
	if n := remote.Counts().TotalGets(); n != 0 {
		t.Fatalf("remote Gets after restart = %d, want 0", n)
	}
	if _, err := os.Stat(debris); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file survived Open: %v", err)
	}
	if _, err := os.Stat(truncated); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("truncated cache file survived Open: %v", err)
	}
}

func TestGet(t *testing.T) {
	ctx := storetest.Context(t)
	mem := memstore.New()
	data := []byte("0123456789")
	d := storetest.Put(t, mem, data)
	remote := storetest.NewCountingStore(mem)
	c := open(t, t.TempDir(), 1<<20, remote)
	for _, offset := range []int64{0, 4, 10} {
		r, err := c.Get(ctx, d, offset)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data[offset:]) {
			t.Fatalf("Get at %d = %q, %v", offset, got, err)
		}
	}
	if n := remote.Counts().Gets[d]; n != 1 {
		t.Fatalf("remote Gets = %d, want 1", n)
	}
	if _, err := c.Get(ctx, d, 11); !errors.Is(err, digest.ErrInvalid) {
		t.Fatalf("Get beyond the end: %v", err)
	}
	if _, err := c.Get(ctx, digest.OfBytes([]byte("nope")), 0); !errors.Is(err, cas.ErrNotFound) {
		t.Fatalf("Get of an absent blob: %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{MaxBytes: 1, Remote: memstore.New()},
		{Dir: "x", Remote: memstore.New()},
		{Dir: "x", MaxBytes: 1},
	} {
		if o.Validate() == nil {
			t.Errorf("Validate(%+v) accepted", o)
		}
	}
}
