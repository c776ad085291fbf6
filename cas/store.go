package cas

import (
	"bytes"
	"context"
	"errors"
	"io"

	"github.com/mound-build/mound/cas/digest"
)

// ErrNotFound is returned (wrapped) when a blob or an action cache entry is
// absent.
var ErrNotFound = errors.New("not found")

// MissingError reports the blob that is absent; it wraps ErrNotFound. Stores
// return it from Get so that callers (the worker fetching inputs, for one)
// can name the missing blob to the client.
type MissingError struct {
	Digest digest.Digest
}

func (e *MissingError) Error() string { return "blob " + e.Digest.String() + " not found" }

// Unwrap makes errors.Is(err, ErrNotFound) hold.
func (e *MissingError) Unwrap() error { return ErrNotFound }

// ErrFull is returned (wrapped) when a store cannot make room for a blob.
var ErrFull = errors.New("store is full")

// BlobGetter reads blobs.
type BlobGetter interface {
	// Get returns d's content from byte offset on. The caller closes the
	// reader. A missing blob is ErrNotFound; offset beyond the size is an
	// error wrapping digest.ErrInvalid. The empty blob is always present.
	Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error)
}

// BlobPutter stores blobs.
type BlobPutter interface {
	// Put stores the blob d whose content r yields. The store checks the
	// content with digest.Verifier and makes the blob visible only once it is
	// complete, verified and durable; on any error (including a mismatch,
	// wrapping digest.ErrMismatch, or a read error from r) nothing is stored.
	// Storing a blob that is already present succeeds. Safe for concurrent
	// use, also for the same digest.
	Put(ctx context.Context, d digest.Digest, r io.Reader) error
}

// MissingFinder answers which blobs are absent.
type MissingFinder interface {
	// FindMissing returns the digests of ds that the store does not hold, in
	// the order given, each at most once. It counts as an access of the
	// present ones for eviction. The empty blob is never missing.
	FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error)
}

// BlobStore is a complete content-addressed store.
type BlobStore interface {
	BlobGetter
	BlobPutter
	MissingFinder
}

// Blob is a digest with its whole content, for batch operations on small blobs.
type Blob struct {
	Digest digest.Digest
	Data   []byte
}

// BatchPutter is an optional ability of a BlobPutter: storing many small
// blobs at once with a single durable commit (group commit). Callers find it
// by type assertion and fall back to PutBatch, which calls Put once per blob.
type BatchPutter interface {
	// PutBatch stores blobs and returns one error per blob (nil on success),
	// with Put's semantics for each.
	PutBatch(ctx context.Context, blobs []Blob) []error
}

// BatchGetter is an optional ability of a BlobGetter: reading many small
// blobs in one round trip (remote.Client has it). Callers fall back to Get
// per blob, a few at a time.
type BatchGetter interface {
	// GetBatch returns, for each digest of ds, its content, verified, or
	// an error (wrapping ErrNotFound for a missing blob).
	GetBatch(ctx context.Context, ds []digest.Digest) ([][]byte, []error)
}

// Mapped is an optional ability of a reader that a BlobGetter returns: its
// unread content as memory (a mapped file), valid until Close. A caller that
// sends bytes on (ByteStream Read) uses it to skip copying them into a
// buffer first; it must not modify or keep the slice.
type Mapped interface {
	Bytes() []byte
}

// ZstdGetter is an optional ability of a BlobGetter: returning a blob as a
// zstd stream without recompressing it, for stores that keep blobs
// compressed. Callers fall back to compressing Get's output.
type ZstdGetter interface {
	// GetZstd returns a zstd stream of d's whole content, or ErrNotFound.
	GetZstd(ctx context.Context, d digest.Digest) (io.ReadCloser, error)
}

// ZstdPutter is an optional ability of a BlobPutter: storing a blob that
// arrives zstd-compressed in its compressed form, so that compressed reads
// need not compress it again. The store verifies the decompressed content.
// Callers fall back to decompressing into Put.
type ZstdPutter interface {
	// PutZstd stores the blob d from the zstd stream zr, with Put's
	// semantics for verification and visibility.
	PutZstd(ctx context.Context, d digest.Digest, zr io.Reader) error
}

// PutBatch stores blobs in p, with one durable commit when p is a
// BatchPutter and one Put per blob otherwise.
func PutBatch(ctx context.Context, p BlobPutter, blobs []Blob) []error {
	if bp, ok := p.(BatchPutter); ok {
		return bp.PutBatch(ctx, blobs)
	}
	errs := make([]error, len(blobs))
	for i, b := range blobs {
		errs[i] = p.Put(ctx, b.Digest, bytes.NewReader(b.Data))
	}
	return errs
}

// ReadAll reads the whole blob d from g, checking its size, for callers that
// need small blobs (Action, Command, Directory, Tree messages) in memory.
func ReadAll(ctx context.Context, g BlobGetter, d digest.Digest) ([]byte, error) {
	r, err := g.Get(ctx, d, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	buf := make([]byte, d.Size)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}
