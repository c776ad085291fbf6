package badgerstore

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"golang.org/x/sys/unix"

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
		if f, ok := stored.(*os.File); ok && e.stored <= maxMapped {
			if m, err := mapFile(f, offset); err == nil {
				return m, nil
			}
			// Fall back to reading the file.
		}
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

// GetBatch implements cas.BatchGetter. Blobs kept raw in packs are read
// straight into their results, blobs adjacent in a pack (a batch written
// together, as BatchReadBlobs of what one BatchUpdateBlobs wrote asks for)
// with one pread for all of them; other blobs are read with Get. Content
// was verified when it was stored.
func (s *Store) GetBatch(ctx context.Context, ds []digest.Digest) ([][]byte, []error) {
	out := make([][]byte, len(ds))
	errs := make([]error, len(ds))
	// in is a blob of the batch in a pack, at off.
	type in struct {
		i    int
		pk   *pack
		off  int64
		size int64
	}
	var packed []in
	for i, d := range ds {
		if d.IsEmpty() {
			out[i] = []byte{}
			continue
		}
		e := s.index.lookup(d)
		switch {
		case e == nil:
			errs[i] = &cas.MissingError{Digest: d}
		case e.enc != packRaw:
			out[i], errs[i] = cas.ReadAll(ctx, s, d)
		default:
			pk, off := s.index.location(e)
			packed = append(packed, in{i, pk, off, e.stored})
		}
	}
	slices.SortFunc(packed, func(a, b in) int {
		return cmp.Or(cmp.Compare(a.pk.id, b.pk.id), cmp.Compare(a.off, b.off))
	})
	for len(packed) > 0 {
		// A run of blobs one after another in one pack, up to
		// maxBatchRead bytes.
		n, end := 1, packed[0].off+packed[0].size
		for n < len(packed) && packed[n].pk == packed[0].pk && packed[n].off == end && end+packed[n].size-packed[0].off <= maxBatchRead {
			end += packed[n].size
			n++
		}
		run := packed[:n]
		packed = packed[n:]
		buf := make([]byte, end-run[0].off)
		err := s.packs.readInto(run[0].pk.id, run[0].off, buf)
		for _, b := range run {
			switch {
			case err == nil:
				out[b.i] = buf[b.off-run[0].off : b.off-run[0].off+b.size : b.off-run[0].off+b.size]
			case errors.Is(err, errPackGone):
				// Compacted meanwhile: Get finds the blob's new place.
				out[b.i], errs[b.i] = cas.ReadAll(ctx, s, ds[b.i])
			default:
				errs[b.i] = fmt.Errorf("read %v: %w", ds[b.i], err)
			}
		}
	}
	return out, errs
}

// maxBatchRead bounds one read of GetBatch: a batch of small blobs is a
// few MiB (max_batch_total_size_bytes); larger requests are read in parts.
const maxBatchRead = 8 << 20

// FindMissing implements cas.MissingFinder from the in-memory index.
func (s *Store) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	return s.index.missing(ds), nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// maxMapped bounds the blobs read through a memory mapping (with its pages
// populated at once); larger ones are read with read(2) so that a few huge
// reads do not pin gigabytes of page tables.
const maxMapped = 256 << 20

// mapped is a file blob mapped into memory, for readers that can send the
// bytes on without copying them first (cas.Mapped).
type mapped struct {
	data []byte // the whole file
	off  int    // next byte to read
}

// mapFile maps f read-only from offset on and closes f (the mapping keeps
// the file's pages).
func mapFile(f *os.File, offset int64) (*mapped, error) {
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() == 0 || offset > st.Size() {
		return nil, fmt.Errorf("cannot map %s", f.Name())
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, err
	}
	return &mapped{data: data, off: int(offset)}, nil
}

func (m *mapped) Read(p []byte) (int, error) {
	if m.off >= len(m.data) {
		return 0, io.EOF
	}
	n := copy(p, m.data[m.off:])
	m.off += n
	return n, nil
}

// Bytes implements cas.Mapped.
func (m *mapped) Bytes() []byte { return m.data[m.off:] }

func (m *mapped) Close() error {
	if m.data == nil {
		return nil
	}
	err := unix.Munmap(m.data)
	m.data = nil
	return err
}
