package badgerstore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// Get implements cas.BlobGetter.
func (s *Store) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	if offset < 0 || offset > d.Size {
		return nil, fmt.Errorf("read %v at offset %d beyond its size: %w", d, offset, digest.ErrInvalid)
	}
	if d.IsEmpty() {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	e := s.index.lookup(d)
	if e == nil {
		return nil, &cas.MissingError{Digest: d}
	}
	stored, err := s.open(e)
	if err != nil {
		return nil, err
	}
	if !e.enc.compressed() {
		if f, ok := stored.(*os.File); ok && offset > 0 {
			if _, err := f.Seek(offset, io.SeekStart); err != nil {
				f.Close()
				return nil, fmt.Errorf("read %v: %w", d, err)
			}
		} else if offset > 0 {
			io.CopyN(io.Discard, stored, offset)
		}
		return stored, nil
	}
	z, err := cas.ZstdDecompress(bufio.NewReaderSize(stored, 128<<10))
	if err != nil {
		stored.Close()
		return nil, fmt.Errorf("read %v: %w", d, err)
	}
	rc := readCloser{Reader: z, close: func() error { z.Close(); return stored.Close() }}
	if offset > 0 {
		if _, err := io.CopyN(io.Discard, z, offset); err != nil {
			rc.Close()
			return nil, fmt.Errorf("read %v: %w", d, err)
		}
	}
	return rc, nil
}

// GetZstd implements cas.ZstdGetter: blobs kept compressed are returned as
// stored; others are compressed as they are read.
func (s *Store) GetZstd(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	if d.IsEmpty() {
		return cas.ZstdCompress(io.NopCloser(bytes.NewReader(nil))), nil
	}
	e := s.index.lookup(d)
	if e == nil {
		return nil, &cas.MissingError{Digest: d}
	}
	stored, err := s.open(e)
	if err != nil {
		return nil, err
	}
	if e.enc.compressed() {
		return stored, nil
	}
	return cas.ZstdCompress(stored), nil
}

// open returns the stored bytes of e as they are on disk.
func (s *Store) open(e *entry) (io.ReadCloser, error) {
	if e.enc.inFile() {
		f, err := os.Open(s.blobPath(e.d.Hash, e.enc))
		if errors.Is(err, os.ErrNotExist) {
			// Evicted between the index lookup and now.
			return nil, &cas.MissingError{Digest: e.d}
		}
		if err != nil {
			return nil, fmt.Errorf("read %v: %w", e.d, err)
		}
		return f, nil
	}
	// Compaction may move the blob between the lookup and the read: look
	// its place up again then. A blob evicted meanwhile is not found.
	for attempt := 0; attempt < 3; attempt++ {
		pk, off := s.index.location(e)
		data, err := s.packs.read(pk.id, off, e.stored)
		if errors.Is(err, errPackGone) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %v: %w", e.d, err)
		}
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	return nil, &cas.MissingError{Digest: e.d}
}

// FindMissing implements cas.MissingFinder from the in-memory index.
func (s *Store) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	return s.index.missing(ds), nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }
