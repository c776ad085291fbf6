package badgerstore

import (
	"context"
	"errors"
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

// BenchmarkGetBatch reads back batches like BatchReadBlobs of what one
// BatchUpdateBlobs of 1-16 KiB blobs wrote, with GetBatch and, for
// comparison, with one Get each.
func BenchmarkGetBatch(b *testing.B) {
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const perBatch = 450
	src := rand.NewChaCha8([32]byte{2})
	blobs := make([]cas.Blob, perBatch)
	ds := make([]digest.Digest, perBatch)
	var bytes int64
	for i := range blobs {
		data := make([]byte, 1024+rand.IntN(15*1024))
		src.Read(data)
		blobs[i] = cas.Blob{Digest: digest.OfBytes(data), Data: data}
		ds[i] = blobs[i].Digest
		bytes += int64(len(data))
	}
	for _, err := range s.PutBatch(context.Background(), blobs) {
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		read func() error
	}{
		{"GetBatch", func() error {
			_, errs := s.GetBatch(context.Background(), ds)
			return errors.Join(errs...)
		}},
		{"ReadAll", func() error {
			for _, d := range ds {
				if _, err := cas.ReadAll(context.Background(), s, d); err != nil {
					return err
				}
			}
			return nil
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(bytes)
			for b.Loop() {
				if err := tc.read(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "blobs/s")
		})
	}
}
