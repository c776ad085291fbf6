package memstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// Store is an in-memory blob store and action cache. The zero value is not
// usable; call New. Safe for concurrent use.
type Store struct {
	mu      sync.RWMutex
	blobs   map[digest.Digest][]byte // guarded by mu
	results map[cas.ActionKey][]byte // serialized ActionResults; guarded by mu
}

// New returns an empty store.
func New() *Store {
	return &Store{blobs: map[digest.Digest][]byte{}, results: map[cas.ActionKey][]byte{}}
}

// Get implements cas.BlobGetter.
func (s *Store) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	if offset < 0 || offset > d.Size {
		return nil, fmt.Errorf("read %v at offset %d: %w", d, offset, digest.ErrInvalid)
	}
	if d.IsEmpty() {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	s.mu.RLock()
	b, ok := s.blobs[d]
	s.mu.RUnlock()
	if !ok {
		return nil, &cas.MissingError{Digest: d}
	}
	return io.NopCloser(bytes.NewReader(b[offset:])), nil
}

// Put implements cas.BlobPutter.
func (s *Store) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	v := digest.NewVerifier(d)
	var buf bytes.Buffer
	if _, err := io.Copy(io.MultiWriter(&buf, v), r); err != nil {
		return fmt.Errorf("put %v: %w", d, err)
	}
	if err := v.Check(); err != nil {
		return err
	}
	s.mu.Lock()
	s.blobs[d] = buf.Bytes()
	s.mu.Unlock()
	return nil
}

// FindMissing implements cas.MissingFinder.
func (s *Store) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	var missing []digest.Digest
	seen := make(map[digest.Digest]bool, len(ds))
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, d := range ds {
		if _, ok := s.blobs[d]; ok || d.IsEmpty() || seen[d] {
			continue
		}
		seen[d] = true
		missing = append(missing, d)
	}
	return missing, nil
}

// Delete removes a blob, for tests that simulate eviction.
func (s *Store) Delete(d digest.Digest) {
	s.mu.Lock()
	delete(s.blobs, d)
	s.mu.Unlock()
}

// GetActionResult implements cas.ActionCache.
func (s *Store) GetActionResult(ctx context.Context, key cas.ActionKey) (*repb.ActionResult, error) {
	s.mu.RLock()
	b, ok := s.results[key]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("action %v in %q: %w", key.Action, key.Instance, cas.ErrNotFound)
	}
	r := &repb.ActionResult{}
	if err := proto.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("action %v: %w", key.Action, err)
	}
	return r, nil
}

// UpdateActionResult implements cas.ActionCache.
func (s *Store) UpdateActionResult(ctx context.Context, key cas.ActionKey, r *repb.ActionResult) error {
	b, err := proto.Marshal(r)
	if err != nil {
		return fmt.Errorf("action %v: %w", key.Action, err)
	}
	s.mu.Lock()
	s.results[key] = b
	s.mu.Unlock()
	return nil
}
