package bench

import "context"

// batch uploads new small blobs with BatchUpdateBlobs, then reads them
// back with BatchReadBlobs, at concurrency c (batches in flight), and
// returns both rates in blobs/s.
func (b *bench) batch(ctx context.Context, s *server, c int) (update, read Measure, err error) {
	blobs := b.src.smallBlobs(b.opts.BatchBlobs, b.opts.BatchMinSize, b.opts.BatchMaxSize)
	var total int64
	for _, bl := range blobs {
		total += bl.d.Size
	}
	batches := s.batches(blobs)
	elapsed, err := parallel(ctx, len(batches), c, func(ctx context.Context, _, i int) error {
		return s.update(ctx, batches[i])
	})
	if err != nil {
		return update, read, err
	}
	update = opsRate(len(blobs), total, elapsed)
	update.Calls = len(batches)
	elapsed, err = parallel(ctx, len(batches), c, func(ctx context.Context, _, i int) error {
		return s.read(ctx, batches[i])
	})
	if err != nil {
		return update, read, err
	}
	read = opsRate(len(blobs), total, elapsed)
	read.Calls = len(batches)
	return update, read, nil
}
