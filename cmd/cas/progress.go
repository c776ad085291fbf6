package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/remote"
)

// redrawInterval is how often a progress bar is redrawn: smooth to the eye,
// negligible work.
const redrawInterval = 200 * time.Millisecond

// bar counts the bytes of a transfer and, when shown, draws
// "LABEL  done / total  percent  rate" on one terminal line until done.
type bar struct {
	w       io.Writer
	label   string
	started atomic.Int64 // when the transfer began (Unix ns): at the first byte or total
	bytes   atomic.Int64
	total   atomic.Int64
	stop    chan struct{} // closed by done
	drawn   chan struct{} // closed when the drawing goroutine returned
	once    sync.Once
}

// newBar starts a bar; it draws only when show is set.
func newBar(w io.Writer, label string, show bool) *bar {
	b := &bar{w: w, label: label, stop: make(chan struct{}), drawn: make(chan struct{})}
	if !show {
		close(b.drawn)
		return b
	}
	go b.draw()
	return b
}

// add counts n bytes moved.
func (b *bar) add(n int64) {
	b.begin()
	b.bytes.Add(n)
}

// addTotal adds n bytes to move; setTotal sets how many to move.
func (b *bar) addTotal(n int64) {
	b.begin()
	b.total.Add(n)
}

func (b *bar) setTotal(n int64) {
	b.begin()
	b.total.Store(n)
}

// restart counts from zero towards total, for a transfer that follows a
// preparation whose bytes should not count (reading a tree's directories).
func (b *bar) restart(total int64) {
	b.started.Store(time.Now().UnixNano())
	b.bytes.Store(0)
	b.total.Store(total)
}

// begin starts the clock of the rate: hashing and listing before the
// transfer should not count against it.
func (b *bar) begin() { b.started.CompareAndSwap(0, time.Now().UnixNano()) }

func (b *bar) rate() string {
	start := b.started.Load()
	if start == 0 {
		return "0 B/s"
	}
	secs := max(time.Since(time.Unix(0, start)).Seconds(), 1e-3)
	return humanBytes(int64(float64(b.bytes.Load())/secs)) + "/s"
}

func (b *bar) counts() string {
	done, total := b.bytes.Load(), b.total.Load()
	if total <= 0 {
		return fmt.Sprintf("%s  %s", humanBytes(done), b.rate())
	}
	return fmt.Sprintf("%s / %s  %d%%  %s", humanBytes(done), humanBytes(total), 100*done/total, b.rate())
}

func (b *bar) draw() {
	defer close(b.drawn)
	t := time.NewTicker(redrawInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			fmt.Fprint(b.w, "\r\033[K") // leave the line clean for what follows
			return
		case <-t.C:
			fmt.Fprintf(b.w, "\r\033[K%s  %s", b.label, b.counts())
		}
	}
}

// done ends the bar and waits until its line is cleared. Safe to call more
// than once.
func (b *bar) done() {
	b.once.Do(func() { close(b.stop) })
	<-b.drawn
}

// humanBytes writes n in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n)/unit, 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[i])
}

// progressStore is the remote client with a bar counting what moves
// through it: the total of an upload is what FindMissing reports missing,
// that of a download is set by the caller. It keeps the client's optional
// abilities (cas.BatchPutter, cas.BatchGetter).
type progressStore struct {
	client *remote.Client
	bar    *bar
}

var (
	_ cas.BlobStore   = (*progressStore)(nil)
	_ cas.BatchPutter = (*progressStore)(nil)
	_ cas.BatchGetter = (*progressStore)(nil)
)

func (s *progressStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	missing, err := s.client.FindMissing(ctx, ds)
	for _, d := range missing {
		s.bar.addTotal(d.Size)
	}
	return missing, err
}

func (s *progressStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	return s.client.Put(ctx, d, &countingReader{r: r, bar: s.bar})
}

func (s *progressStore) PutBatch(ctx context.Context, blobs []cas.Blob) []error {
	errs := s.client.PutBatch(ctx, blobs)
	for i, err := range errs {
		if err == nil {
			s.bar.add(blobs[i].Digest.Size)
		}
	}
	return errs
}

func (s *progressStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	rc, err := s.client.Get(ctx, d, offset)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{&countingReader{r: rc, bar: s.bar}, rc}, nil
}

func (s *progressStore) GetBatch(ctx context.Context, ds []digest.Digest) ([][]byte, []error) {
	data, errs := s.client.GetBatch(ctx, ds)
	for i, err := range errs {
		if err == nil {
			s.bar.add(int64(len(data[i])))
		}
	}
	return data, errs
}

// countingReader adds what passes through it to a bar.
type countingReader struct {
	r   io.Reader
	bar *bar
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.bar.add(int64(n))
	return n, err
}
