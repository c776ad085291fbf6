package badgerstore

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
)

// BenchmarkPutBatch stores batches like a BatchUpdateBlobs request of
// 1-16 KiB blobs.
func BenchmarkPutBatch(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const perBatch = 450
	// Random content from a fast generator, made before timing starts.
	src := rand.NewChaCha8([32]byte{1})
	batches := make([][]cas.Blob, b.N)
	var bytes int64
	for i := range batches {
		batches[i] = make([]cas.Blob, perBatch)
		for j := range batches[i] {
			data := make([]byte, 1024+rand.IntN(15*1024))
			src.Read(data)
			batches[i][j] = cas.Blob{Digest: digest.OfBytes(data), Data: data}
			bytes += int64(len(data))
		}
	}
	b.SetBytes(bytes / int64(b.N))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, err := range s.PutBatch(context.Background(), batches[i]) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "blobs/s")
}
