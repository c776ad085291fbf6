package storetest

import (
	"context"
	"io"
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// CountingStore is a cas.BlobStore decorator that counts what goes through
// it, for tests that check what a caller reads and sends. It is a
// cas.BatchPutter (through cas.PutBatch on the store it wraps) and has no
// GetBatch, so reads through it take the one-Get-per-blob path. Safe for
// concurrent use.
type CountingStore struct {
	cas.BlobStore

	mu     sync.Mutex
	counts Counts // guarded by mu
}

// Counts is what a CountingStore saw.
type Counts struct {
	// Gets counts the Get calls of each digest.
	Gets map[digest.Digest]int
	// Puts are the digests of the Put calls, in order; PutsFromFile counts
	// those whose reader was an *os.File (streamed from disk).
	Puts         []digest.Digest
	PutsFromFile int
	// Batched are the digests of the blobs of PutBatch calls, in order.
	Batched []digest.Digest
	// FindMissingCalls counts the FindMissing calls.
	FindMissingCalls int
}

// Sent returns the digests of every blob sent to the store: the Puts, then
// the Batched.
func (c Counts) Sent() []digest.Digest {
	return append(slices.Clone(c.Puts), c.Batched...)
}

// TotalGets is the number of Get calls, of any digest.
func (c Counts) TotalGets() int {
	n := 0
	for _, g := range c.Gets {
		n += g
	}
	return n
}

// NewCountingStore returns a CountingStore around s, with nothing counted.
func NewCountingStore(s cas.BlobStore) *CountingStore {
	return &CountingStore{BlobStore: s, counts: Counts{Gets: map[digest.Digest]int{}}}
}

// Counts returns a copy of what was counted so far.
func (s *CountingStore) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts
	c.Gets = maps.Clone(c.Gets)
	c.Puts = slices.Clone(c.Puts)
	c.Batched = slices.Clone(c.Batched)
	return c
}

// Take returns what was counted so far and starts counting afresh.
func (s *CountingStore) Take() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts
	s.counts = Counts{Gets: map[digest.Digest]int{}}
	return c
}

// Get counts and passes the call on.
func (s *CountingStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	s.mu.Lock()
	s.counts.Gets[d]++
	s.mu.Unlock()
	return s.BlobStore.Get(ctx, d, offset)
}

// Put counts and passes the call on.
func (s *CountingStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	s.mu.Lock()
	s.counts.Puts = append(s.counts.Puts, d)
	if _, ok := r.(*os.File); ok {
		s.counts.PutsFromFile++
	}
	s.mu.Unlock()
	return s.BlobStore.Put(ctx, d, r)
}

// PutBatch counts and stores blobs with cas.PutBatch on the wrapped store.
func (s *CountingStore) PutBatch(ctx context.Context, blobs []cas.Blob) []error {
	s.mu.Lock()
	for _, b := range blobs {
		s.counts.Batched = append(s.counts.Batched, b.Digest)
	}
	s.mu.Unlock()
	return cas.PutBatch(ctx, s.BlobStore, blobs)
}

// FindMissing counts and passes the call on.
func (s *CountingStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	s.mu.Lock()
	s.counts.FindMissingCalls++
	s.mu.Unlock()
	return s.BlobStore.FindMissing(ctx, ds)
}
