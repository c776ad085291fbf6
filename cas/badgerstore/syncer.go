package badgerstore

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// syncEvery is how many bytes a large upload writes between the
// fdatasyncs its syncer runs while the upload goes on. On the virtual disks
// mound is measured on, an fsync costs the flush of everything written
// since the previous one (about 100 ms for 64 MiB, however early write-back
// was started with sync_file_range): syncing as the bytes arrive overlaps
// that cost with receiving them, and the final fsync flushes only the last
// few MiB. A sync costs a few milliseconds of its own, so 8 MiB (about 20
// ms of a fast upload) keeps that overhead small.
const syncEvery = 8 << 20

// syncer writes to a file and makes its bytes durable as they come: every
// syncEvery bytes, a goroutine of its own fdatasyncs the file, unless a sync
// is already waiting to run. Durability still comes from sync, which
// waits for the goroutine and fsyncs the whole file. Not safe for
// concurrent use; stop (or sync) must be called before the file is closed.
type syncer struct {
	f       *os.File
	fd      int
	written int64         // bytes written
	asked   int64         // written when a sync was last requested
	ask     chan struct{} // requests to sync; the goroutine ends when it is closed
	done    chan struct{} // closed when the goroutine returned
	err     error         // first error of a background sync; read after done
	stopped bool
}

func newSyncer(f *os.File) *syncer {
	w := &syncer{f: f, fd: int(f.Fd()), ask: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for range w.ask {
			// Keep the first error: the kernel reports a failed
			// write-back to one sync only, so a later fsync could
			// succeed although bytes were lost.
			if err := unix.Fdatasync(w.fd); err != nil && w.err == nil {
				w.err = fmt.Errorf("sync %s: %w", w.f.Name(), err)
			}
		}
	}()
	return w
}

func (w *syncer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.written += int64(n)
	if w.written-w.asked >= syncEvery {
		select {
		case w.ask <- struct{}{}:
			w.asked = w.written
		default:
			// A sync is waiting to run and will cover these bytes too.
		}
	}
	return n, err
}

// stop ends the goroutine and waits for it. Calls after the first do
// nothing.
func (w *syncer) stop() {
	if !w.stopped {
		w.stopped = true
		close(w.ask)
		<-w.done
	}
}

// sync makes everything written durable and stops the goroutine.
func (w *syncer) sync() error {
	w.stop()
	if w.err != nil {
		return w.err
	}
	return w.f.Sync()
}
