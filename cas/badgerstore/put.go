package badgerstore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// copyBuffer is the size of the buffer an upload is read through when its
// reader does not hand over its own chunks (io.WriterTo): big enough that
// hashing and writing work on large runs of bytes.
const copyBuffer = 1 << 20

// writeBuffer is the size of the buffer in front of a large blob's file. It
// gathers small chunks (Bazel sends 16 KiB) into writes big enough that
// system calls cost little; chunks at least this large are written as they
// are, without being copied into it (bufio.Writer does so when it is
// empty), which saved a copy of every byte of 1 MiB-chunked uploads.
const writeBuffer = 256 << 10

// Put implements cas.BlobPutter.
func (s *Store) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	return s.put(ctx, d, r, false)
}

// PutZstd implements cas.ZstdPutter: the blob is kept in the compressed form
// the client sent, so compressed reads serve it without compressing again.
func (s *Store) PutZstd(ctx context.Context, d digest.Digest, zr io.Reader) error {
	return s.put(ctx, d, zr, true)
}

func (s *Store) put(ctx context.Context, d digest.Digest, r io.Reader, compressed bool) error {
	if d.IsEmpty() {
		// Always present; still refuse content that is not empty.
		_, err := s.receive(io.Discard, d, r, compressed)
		return err
	}
	if s.index.lookup(d) != nil {
		return nil
	}
	if err := s.makeRoom(d.Size); err != nil {
		return err
	}
	defer s.index.release(d.Size)
	// Receive and verify without holding the digest's slot: concurrent
	// uploads of one blob (two clients, or a compressed and a plain one)
	// must not wait for each other's bytes. Only commits are serialized,
	// and the first one wins.
	var st *staged
	var err error
	if d.Size <= s.opts.InlineLimit {
		st, err = s.stageInline(d, r, compressed)
	} else {
		st, err = s.stageFile(d, r, compressed)
	}
	if err != nil {
		return storeError(d, err)
	}
	defer st.discard()
	done, err := s.acquire(ctx, d.Hash)
	if err != nil {
		return err
	}
	defer done()
	if s.index.lookup(d) != nil {
		return nil
	}
	if err := st.commit(s); err != nil {
		return storeError(d, err)
	}
	s.index.add(st.entry)
	return nil
}

// staged is a verified blob ready to be committed.
type staged struct {
	entry *entry
	value []byte // content of an inline blob
	tmp   string // temporary file of a file blob, removed by discard unless committed
}

// commit makes the blob durable and visible in Badger.
func (st *staged) commit(s *Store) error {
	e := st.entry
	if !e.enc.inFile() {
		pk, offs, err := s.packs.appendBlobs([][]byte{st.value})
		if err != nil {
			return err
		}
		e.pk, e.off = pk, offs[0]
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(metaKey(e.d.Hash), e.meta()) }); err != nil {
			s.index.addDead(e.stored)
			return err
		}
		return nil
	}
	final := s.blobPath(e.d.Hash, e.enc)
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return err
	}
	if err := os.Rename(st.tmp, final); err != nil {
		return err
	}
	st.tmp = ""
	if err := syncDir(filepath.Dir(final)); err != nil {
		return err
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(metaKey(e.d.Hash), e.meta()) }); err != nil {
		os.Remove(final)
		return err
	}
	return nil
}

// discard removes what commit did not take.
func (st *staged) discard() {
	if st.tmp != "" {
		os.Remove(st.tmp)
	}
}

// acquire makes the caller the only writer (or evicter) of h until it calls
// done. Waiting writers find the blob present once the first has finished.
func (s *Store) acquire(ctx context.Context, h digest.Hash) (done func(), err error) {
	for {
		done, err := s.puts.begin(ctx, h)
		if err != nil || done != nil {
			return done, err
		}
	}
}

// receive copies r (decompressing it when compressed) to dst through the
// verifier and returns the number of bytes read from r.
func (s *Store) receive(dst io.Writer, d digest.Digest, r io.Reader, compressed bool) (int64, error) {
	v := digest.NewVerifier(d)
	buf := make([]byte, min(copyBuffer, max(d.Size, 512)))
	if !compressed {
		n, err := io.CopyBuffer(io.MultiWriter(dst, v), r, buf)
		if err != nil {
			return n, err
		}
		return n, v.Check()
	}
	counted := &countingReader{r: r}
	z, err := cas.ZstdDecompress(counted)
	if err != nil {
		return 0, err
	}
	defer z.Close()
	if _, err := io.CopyBuffer(io.MultiWriter(dst, v), z, buf); err != nil {
		return counted.n, err
	}
	return counted.n, v.Check()
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// stageInline receives a small blob into memory; commit appends it to a
// pack. Compressed uploads are
// kept compressed when that saves at least a tenth.
func (s *Store) stageInline(d digest.Digest, r io.Reader, compressed bool) (*staged, error) {
	var raw bytes.Buffer
	raw.Grow(int(d.Size))
	value := &raw
	e := &entry{d: d, enc: packRaw, atime: time.Now().Unix()}
	if compressed {
		// Keep a copy of the compressed bytes as they pass. A zstd stream
		// of n bytes never needs more than about n + n/128 + a frame
		// header; anything longer is not a sane upload.
		var comp bytes.Buffer
		limit := d.Size + d.Size/64 + 64<<10
		lr := &io.LimitedReader{R: r, N: limit + 1}
		if _, err := s.receive(&raw, d, io.TeeReader(lr, &comp), true); err != nil {
			return nil, err
		}
		if lr.N <= 0 {
			return nil, fmt.Errorf("%v: compressed stream longer than %d bytes: %w", d, limit, digest.ErrMismatch)
		}
		if int64(comp.Len()) < d.Size*9/10 {
			value, e.enc = &comp, packZstd
		}
	} else if _, err := s.receive(&raw, d, r, false); err != nil {
		return nil, err
	}
	e.stored = int64(value.Len())
	return &staged{entry: e, value: value.Bytes()}, nil
}

// stageFile streams a large blob to a temporary file, verifies it and makes
// its content durable; commit moves it into place.
func (s *Store) stageFile(d digest.Digest, r io.Reader, compressed bool) (st *staged, err error) {
	f, err := os.CreateTemp(s.tmp, "upload-*")
	if err != nil {
		return nil, err
	}
	defer func() {
		f.Close()
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	e := &entry{d: d, enc: fileRaw, atime: time.Now().Unix()}
	if !compressed {
		// Allocating the blocks at once makes the writes cheaper (about a
		// fifth, measured on ext4) and fails early on a full disk.
		if err := unix.Fallocate(int(f.Fd()), 0, 0, d.Size); errors.Is(err, unix.ENOSPC) {
			return nil, err
		}
	}
	sy := newSyncer(f)
	defer sy.stop()
	w := bufio.NewWriterSize(sy, writeBuffer)
	if compressed {
		e.enc = fileZstd
		cw := &countingWriter{w: w}
		if _, err := s.receive(io.Discard, d, io.TeeReader(r, cw), true); err != nil {
			return nil, err
		}
		e.stored = cw.n
	} else if e.stored, err = s.receive(w, d, r, false); err != nil {
		return nil, err
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	if err := sy.sync(); err != nil {
		return nil, err
	}
	return &staged{entry: e, tmp: f.Name()}, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// PutBatch implements cas.BatchPutter: all small blobs of the batch are
// appended to a pack with one write and one (shared) fdatasync, and their
// metadata committed in one Badger write.
//
// The blobs are verified while their bytes are written and synced: both
// take about as long as the other, hashing on the CPUs and syncing on the
// disk. Only verified blobs get metadata; the bytes of the others are dead
// and reclaimed by compaction.
func (s *Store) PutBatch(ctx context.Context, blobs []cas.Blob) []error {
	errs := make([]error, len(blobs))
	var small []int // indexes of inline-sized blobs, to verify here
	var todo []int  // those of them not empty
	for i, b := range blobs {
		switch {
		case b.Digest.Size > s.opts.InlineLimit:
			// A file of its own; Put verifies it.
			errs[i] = s.Put(ctx, b.Digest, bytes.NewReader(b.Data))
		case b.Digest.IsEmpty():
			small = append(small, i)
		default:
			small = append(small, i)
			todo = append(todo, i)
		}
	}
	// Acquire in hash order, so that two batches never wait on each other.
	slices.SortFunc(todo, func(a, b int) int { return bytes.Compare(blobs[a].Digest.Hash[:], blobs[b].Digest.Hash[:]) })
	var write []int // indexes of the blobs to write
	var data [][]byte
	var total int64
	var (
		first   = -1    // the first index of the digest at hand
		held    error   // the error of acquiring its slot
		writing = false // whether it is being written
	)
	for _, i := range todo {
		d := blobs[i].Digest
		if first >= 0 && blobs[first].Digest == d {
			// The same digest again, its slot already held. Identical
			// bytes need writing once; different bytes (at most one
			// copy can be right) are written too, and verification
			// tells which copy gets the metadata.
			errs[i] = held
			if writing && !bytes.Equal(blobs[i].Data, blobs[write[len(write)-1]].Data) {
				write = append(write, i)
				data = append(data, blobs[i].Data)
				total += d.Size
			}
			continue
		}
		first, writing = i, false
		done, err := s.acquire(ctx, d.Hash)
		if held = err; err != nil {
			errs[i] = err
			continue
		}
		defer done()
		if s.index.lookup(d) != nil {
			continue
		}
		writing = true
		write = append(write, i)
		data = append(data, blobs[i].Data)
		total += d.Size
	}
	var (
		pk        *pack
		offs      []int64
		appendErr error
		appended  = make(chan struct{})
	)
	if len(write) > 0 {
		if err := s.makeRoom(total); err != nil {
			for _, i := range write {
				errs[i] = storeError(blobs[i].Digest, err)
			}
			write = nil
		} else {
			defer s.index.release(total)
		}
	}
	if len(write) > 0 {
		go func() {
			defer close(appended)
			pk, offs, appendErr = s.packs.appendBlobs(data)
		}()
	} else {
		close(appended)
	}
	verifyAll(blobs, small, errs)
	<-appended
	if len(write) == 0 {
		return errs
	}
	fail := func(err error) []error {
		for _, i := range write {
			if errs[i] == nil {
				errs[i] = storeError(blobs[i].Digest, err)
			}
		}
		return errs
	}
	if appendErr != nil {
		return fail(appendErr)
	}
	var entries []*entry
	var dead int64 // bytes written for blobs that failed verification
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for j, i := range write {
		d := blobs[i].Digest
		if errs[i] != nil || (len(entries) > 0 && entries[len(entries)-1].d == d) {
			dead += d.Size
			continue
		}
		e := &entry{d: d, enc: packRaw, stored: d.Size, atime: time.Now().Unix(), pk: pk, off: offs[j]}
		if err := wb.Set(metaKey(d.Hash), e.meta()); err != nil {
			s.index.addDead(total)
			return fail(err)
		}
		entries = append(entries, e)
	}
	if len(entries) > 0 {
		if err := wb.Flush(); err != nil {
			s.index.addDead(total)
			return fail(err)
		}
	}
	s.index.addDead(dead)
	for _, e := range entries {
		s.index.add(e)
	}
	return errs
}

// verifyAll checks the blobs at indexes which against their digests, on
// all cores (hashing a batch of a few MiB is most of its CPU cost), and
// sets the errors of those that fail where errs has none yet.
func verifyAll(blobs []cas.Blob, which []int, errs []error) {
	workers := min(runtime.GOMAXPROCS(0), max(len(which)/16, 1))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := w; k < len(which); k += workers {
				i := which[k]
				v := digest.NewVerifier(blobs[i].Digest)
				v.Write(blobs[i].Data)
				if err := v.Check(); err != nil && errs[i] == nil {
					errs[i] = err
				}
			}
		}()
	}
	wg.Wait()
}

// storeError names the blob and marks a full disk as cas.ErrFull.
func storeError(d digest.Digest, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("store %v: %w: %w", d, cas.ErrFull, err)
	}
	if errors.Is(err, digest.ErrMismatch) || errors.Is(err, cas.ErrCorrupt) {
		return err
	}
	return fmt.Errorf("store %v: %w", d, err)
}
