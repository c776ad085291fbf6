package bench

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Disk is the durable sequential write rate of the file system the target
// keeps its data in. A server that answers an upload only once its bytes
// are durable cannot write faster than this, whatever the floor, which
// keeps bytes in memory, reaches: it bounds the ByteStream Write rows.
type Disk struct {
	// Dir is the directory the files were written in (Options.DiskDir).
	Dir string `json:"dir"`
	// Bytes is the size of each file.
	Bytes int `json:"bytes"`
	// Write is the best rate, in MB/s, of creating a file, writing Bytes
	// to it in writeChunk pieces and making it durable (fsync of the file
	// and of its directory). Each try is made twice: with one fsync at the
	// end, as dd conv=fsync does, and with an fdatasync every
	// diskSyncEvery bytes along the way as well, which on virtual disks
	// whose fsync flushes everything written since the last one is the
	// faster of the two. The best of all is kept, as the try least
	// disturbed by the rest of the machine.
	Write float64 `json:"write_mb_s"`
	// Tries is how many files were written.
	Tries int `json:"tries"`
	// BatchBytes is the size of a full batch of small blobs (the floor's
	// max_batch_total_size_bytes), and BatchMillis the best time of
	// appending that many bytes to a file and making them durable
	// (fdatasync), as a server does before it answers a BatchUpdateBlobs.
	BatchBytes  int     `json:"batch_bytes"`
	BatchMillis float64 `json:"batch_ms"`
}

// diskRepeats is how many times each way of writing is measured, each
// time the measurement is made.
const diskRepeats = 3

// diskSyncEvery is how often the second way of writing syncs along the
// way: often enough to overlap most of the flushing with the writing.
const diskSyncEvery = 8 << 20

// measureDisk measures Disk in dir with data as the content of each file.
func measureDisk(dir string, data []byte) (Disk, error) {
	d := Disk{Dir: dir, Bytes: len(data)}
	var fastest time.Duration
	for i := range 2 * diskRepeats {
		took, err := writeDurably(dir, data, i%2 == 1)
		if err != nil {
			return d, err
		}
		if i == 0 || took < fastest {
			fastest = took
		}
		d.Tries++
	}
	d.Write = float64(len(data)) / 1e6 / max(fastest.Seconds(), 1e-9)
	d.BatchBytes = min(floorMaxBatchBytes, len(data))
	took, err := appendDurably(dir, data[:d.BatchBytes], 2*diskRepeats)
	if err != nil {
		return d, err
	}
	d.BatchMillis = took.Seconds() * 1e3
	return d, nil
}

// appendDurably appends batch to a new file in dir n times, each time
// followed by an fdatasync, and returns the fastest append; the file is
// removed afterwards.
func appendDurably(dir string, batch []byte, n int) (time.Duration, error) {
	f, err := os.CreateTemp(dir, "mound-bench-batches-*")
	if err != nil {
		return 0, fmt.Errorf("disk: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	var fastest time.Duration
	for i := range n {
		start := time.Now()
		if _, err := f.Write(batch); err != nil {
			return 0, fmt.Errorf("disk: write %s: %w", f.Name(), err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return 0, fmt.Errorf("disk: sync %s: %w", f.Name(), err)
		}
		if took := time.Since(start); i == 0 || took < fastest {
			fastest = took
		}
	}
	return fastest, nil
}

// best returns the better of each figure of d and e.
func (d Disk) best(e Disk) Disk {
	tries := d.Tries + e.Tries
	batch := min(d.BatchMillis, e.BatchMillis)
	if e.Write > d.Write {
		d = e
	}
	d.Tries, d.BatchMillis = tries, batch
	return d
}

// writeDurably writes data to a new file in dir, makes it durable and
// returns how long that took; the file is removed afterwards. With
// syncAlong, a goroutine fdatasyncs the file every diskSyncEvery bytes
// while the writing goes on.
func writeDurably(dir string, data []byte, syncAlong bool) (took time.Duration, err error) {
	start := time.Now()
	f, err := os.CreateTemp(dir, "mound-bench-disk-*")
	if err != nil {
		return 0, fmt.Errorf("disk: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	// The syncing goroutine, when there is one, takes a request at a time
	// and keeps its first error; it ends when syncs is closed.
	syncs := make(chan struct{}, 1)
	synced := make(chan error, 1)
	go func(syncs <-chan struct{}) {
		var first error
		for range syncs {
			if err := unix.Fdatasync(int(f.Fd())); err != nil && first == nil {
				first = err
			}
		}
		synced <- first
	}(syncs)
	stop := func() error {
		if syncs == nil {
			return nil
		}
		close(syncs)
		syncs = nil
		return <-synced
	}
	defer stop()
	asked := 0
	for off := 0; off < len(data); off += writeChunk {
		end := min(off+writeChunk, len(data))
		if _, err := f.Write(data[off:end]); err != nil {
			return 0, fmt.Errorf("disk: write %s: %w", f.Name(), err)
		}
		if syncAlong && end-asked >= diskSyncEvery {
			select {
			case syncs <- struct{}{}:
				asked = end
			default: // a sync is waiting to run and will cover these bytes
			}
		}
	}
	if err := stop(); err != nil {
		return 0, fmt.Errorf("disk: sync %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("disk: sync %s: %w", f.Name(), err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return 0, fmt.Errorf("disk: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return 0, fmt.Errorf("disk: sync %s: %w", dir, err)
	}
	return time.Since(start), nil
}
