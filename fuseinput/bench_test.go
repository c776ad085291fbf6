//go:build linux

package fuseinput

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mound-build/mound/cas/digest"
)

// BenchmarkLargeRead reads one 256 MiB input through the mount, with the
// blob not yet in the worker's cache (cold: the fetch from the in-memory
// CAS is part of it) and in the cache (warm), with and without
// passthrough, beside a plain read of the same bytes from the cache's file
// on local disk. Figures in MB/s; see BENCHMARKS.md.
func BenchmarkLargeRead(b *testing.B) {
	const size = 256 << 20
	data := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{})
	rng.Read(data)
	for _, pass := range []bool{false, true} {
		b.Run(fmt.Sprintf("passthrough=%v", pass), func(b *testing.B) {
			var cold, warm, plain time.Duration
			for range b.N {
				e := newEnv(b, pass)
				d := digest.OfBytes(data)
				if err := e.store.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
				root := e.uploadDir(b, map[string]digest.Digest{"big": d})
				_, mnt := e.mount(b, root)
				cold += timeRead(b, filepath.Join(mnt, "big"), size)
				// A new mount: the kernel's cache of the first is gone,
				// the blob is in the worker's cache.
				_, mnt2 := e.mount(b, root)
				warm += timeRead(b, filepath.Join(mnt2, "big"), size)
				p, err := e.cache.Path(context.Background(), d, false)
				if err != nil {
					b.Fatal(err)
				}
				plain += timeRead(b, p, size)
			}
			mbps := func(total time.Duration) float64 { return float64(size) * float64(b.N) / total.Seconds() / 1e6 }
			b.ReportMetric(mbps(cold), "cold-MB/s")
			b.ReportMetric(mbps(warm), "warm-MB/s")
			b.ReportMetric(mbps(plain), "plain-MB/s")
			b.ReportMetric(100*mbps(warm)/mbps(plain), "warm-%-of-plain")
		})
	}
}

// timeRead reads the file name whole in 1 MiB reads and returns the time.
func timeRead(b *testing.B, name string, size int64) time.Duration {
	b.Helper()
	start := time.Now()
	f, err := openFile(name, os.O_RDONLY)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20))
	if err != nil || n != size {
		b.Fatalf("read %s: %d bytes, %v", name, n, err)
	}
	return time.Since(start)
}
