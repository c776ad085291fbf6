package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/resource"
)

// resumeWindow is how long an interrupted upload waits for its client to
// come back with QueryWriteStatus and the rest of the bytes. Bazel retries
// within seconds; a minute covers a restarted client's backoff too.
const resumeWindow = time.Minute

// errAbandoned ends a Put whose client never resumed.
var errAbandoned = errors.New("upload abandoned by its client")

// upload is a ByteStream write in progress. Its bytes flow through feed
// into a Put running on its own goroutine, which outlives any one stream:
// when a stream breaks, the Put waits and a later stream with the same
// resource name continues where the first stopped, with nothing re-sent
// and nothing copied twice.
type upload struct {
	name resource.Name
	feed *feed
	done chan struct{} // closed when the Put returned
	err  error         // the Put's result; read after done

	// mu is held while a stream hands bytes to feed, so that a stream that
	// takes the upload over sees every byte its predecessor committed.
	mu        sync.Mutex
	committed int64       // next expected write_offset; guarded by mu
	attached  bool        // a stream is sending; guarded by mu
	gen       int         // generation of the stream allowed to send; guarded by mu
	expire    *time.Timer // abandons a detached upload; guarded by mu
}

// uploads tracks writes in progress by resource name.
type uploads struct {
	mu sync.Mutex
	m  map[string]*upload // guarded by mu
	wg sync.WaitGroup     // Put goroutines
}

// attach returns the upload for a stream whose first request names name at
// offset, with the generation the stream must present to send, starting a
// Put when the upload is new. A stream resuming an upload that another
// stream still holds (a client retrying before the server noticed its first
// stream died) takes it over.
func (u *uploads) attach(ctx context.Context, key string, name resource.Name, offset int64, p cas.BlobPutter, chunks *ChunkCodec) (*upload, int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if up, ok := u.m[key]; ok {
		up.mu.Lock()
		defer up.mu.Unlock()
		if err := up.checkOffset(offset); err != nil {
			return nil, 0, err
		}
		up.attached = true
		up.gen++
		up.expire.Stop()
		return up, up.gen, nil
	}
	if offset != 0 {
		return nil, 0, fmt.Errorf("%w: write_offset %d for %s, which has no upload in progress; start at 0", digest.ErrInvalid, offset, key)
	}
	up := &upload{name: name, feed: newFeed(chunks), done: make(chan struct{}), attached: true, gen: 1}
	up.expire = time.AfterFunc(resumeWindow, func() { u.abandon(key, up) })
	up.expire.Stop()
	u.m[key] = up
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		// The Put belongs to the upload, not to one stream's context.
		ctx := context.WithoutCancel(ctx)
		if zp, ok := p.(cas.ZstdPutter); ok && name.Compressor == resource.Zstd {
			up.err = zp.PutZstd(ctx, name.Digest, up.feed)
		} else if name.Compressor == resource.Zstd {
			up.err = putDecompressed(ctx, p, name.Digest, up.feed)
		} else {
			up.err = p.Put(ctx, name.Digest, up.feed)
		}
		up.feed.stop()
		close(up.done)
	}()
	return up, up.gen, nil
}

// checkOffset accepts a write at offset. Plain uploads may repeat bytes
// already committed (a client resuming from an older QueryWriteStatus):
// content is fixed by the digest, so the repeated part is dropped. Offsets
// of compressed uploads count compressed bytes, which only the client can
// reproduce, so they must match exactly.
func (up *upload) checkOffset(offset int64) error {
	if offset == up.committed || (offset >= 0 && offset < up.committed && up.name.Compressor == resource.Identity) {
		return nil
	}
	return fmt.Errorf("%w: write_offset %d, but %d bytes of %v are committed (ask QueryWriteStatus)", digest.ErrInvalid, offset, up.committed, up.name.Digest)
}

// write hands the part of data at offset that is not committed yet to the
// Put. It fails with errSuperseded when a newer stream took the upload.
func (up *upload) write(ctx context.Context, gen int, offset int64, data []byte) (int, error) {
	up.mu.Lock()
	defer up.mu.Unlock()
	if up.gen != gen {
		return 0, errSuperseded
	}
	if err := up.checkOffset(offset); err != nil {
		return 0, err
	}
	data = data[min(int64(len(data)), up.committed-offset):]
	if len(data) == 0 {
		return 0, nil
	}
	if err := up.feed.write(ctx, data); err != nil {
		return 0, err
	}
	up.committed += int64(len(data))
	return len(data), nil
}

// errSuperseded ends a stream whose upload another stream took over.
var errSuperseded = errors.New("another stream resumed this upload")

func putDecompressed(ctx context.Context, p cas.BlobPutter, d digest.Digest, zr io.Reader) error {
	z, err := cas.ZstdDecompress(zr)
	if err != nil {
		return err
	}
	defer z.Close()
	return p.Put(ctx, d, z)
}

// detach is called when a stream ends without finishing: the upload waits
// resumeWindow for another stream. A superseded stream detaches nothing.
func (u *uploads) detach(up *upload, gen int) {
	up.mu.Lock()
	defer up.mu.Unlock()
	if up.gen != gen {
		return
	}
	up.attached = false
	up.expire.Reset(resumeWindow)
}

// finish removes a completed or failed upload.
func (u *uploads) finish(key string, up *upload) {
	up.mu.Lock()
	up.expire.Stop()
	up.mu.Unlock()
	u.mu.Lock()
	if u.m[key] == up {
		delete(u.m, key)
	}
	u.mu.Unlock()
}

func (u *uploads) abandon(key string, up *upload) {
	// Both locks, in attach's order, so that no stream can attach between
	// the check and the removal.
	u.mu.Lock()
	up.mu.Lock()
	if up.attached || u.m[key] != up {
		up.mu.Unlock()
		u.mu.Unlock()
		return
	}
	delete(u.m, key)
	up.mu.Unlock()
	u.mu.Unlock()
	up.feed.close(errAbandoned)
}

// committed reports the bytes received for key, if an upload is in progress.
func (u *uploads) committed(key string) (int64, bool) {
	u.mu.Lock()
	up, ok := u.m[key]
	u.mu.Unlock()
	if !ok {
		return 0, false
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	return up.committed, true
}

// feed carries received chunks from streams to the Put reading them. The
// small buffer lets the network side receive the next chunks while the Put
// hashes and writes the current one.
type feed struct {
	ch       chan []byte
	stopped  chan struct{} // closed when the reader will read no more
	closeErr error         // what Read returns after ch is closed
	chunk    []byte        // the chunk being read
	cur      []byte        // what is left of it
	chunks   *ChunkCodec   // where consumed chunks go back; nil keeps them
	once     sync.Once
}

// errFeedStopped is returned by write when the Put no longer reads.
var errFeedStopped = errors.New("upload already ended")

// feedDepth chunks in flight: with 1 MiB chunks, a few MiB per upload.
const feedDepth = 4

func newFeed(chunks *ChunkCodec) *feed {
	return &feed{ch: make(chan []byte, feedDepth), stopped: make(chan struct{}), chunks: chunks}
}

// next waits for the next chunk; it returns false once the feed is closed.
func (f *feed) next() bool {
	b, ok := <-f.ch
	if !ok {
		return false
	}
	f.chunk, f.cur = b, b
	return true
}

// consumed gives the current chunk back once all its bytes were read. The
// Put's writers do not keep the bytes they are given (io.Writer), and Read
// copied them out.
func (f *feed) consumed() {
	if len(f.cur) == 0 && f.chunk != nil {
		f.chunks.release(f.chunk)
		f.chunk = nil
	}
}

// Read implements io.Reader for the Put.
func (f *feed) Read(p []byte) (int, error) {
	for len(f.cur) == 0 {
		if !f.next() {
			return 0, f.closeErr
		}
	}
	n := copy(p, f.cur)
	f.cur = f.cur[n:]
	f.consumed()
	return n, nil
}

// WriteTo gives the Put the received chunks as they are, without copying
// them through a read buffer.
func (f *feed) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(f.cur) == 0 && !f.next() {
			if f.closeErr == io.EOF {
				return total, nil
			}
			return total, f.closeErr
		}
		n, err := w.Write(f.cur)
		total += int64(n)
		f.cur = f.cur[n:]
		f.consumed()
		if err != nil {
			return total, err
		}
	}
}

// write hands b to the Put; it fails if the Put has already returned.
func (f *feed) write(ctx context.Context, b []byte) error {
	select {
	case f.ch <- b:
		return nil
	case <-f.stopped:
		return errFeedStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close ends the data: the Put reads err (io.EOF for a finished upload).
func (f *feed) close(err error) {
	f.once.Do(func() {
		f.closeErr = err
		close(f.ch)
	})
}

// stop tells writers the Put is no longer reading.
func (f *feed) stop() { close(f.stopped) }
