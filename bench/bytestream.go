package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/google/uuid"
	"github.com/klauspost/compress/zstd"
	bspb "google.golang.org/genproto/googleapis/bytestream"

	"github.com/mound-build/mound/cas/resource"
)

// writeChunk is the size of the data of each WriteRequest, as Bazel sends.
const writeChunk = 1 << 20

// stream writes new large blobs with ByteStream, then reads them back, at
// concurrency c (streams in flight), and returns both rates in MB/s of
// uncompressed content. With compressed set, the blobs are compressible
// text, compressed before timing starts, written and read through
// compressed-blobs/zstd, and decompressed as they are read.
func (b *bench) stream(ctx context.Context, s *server, c int, compressed bool) (write, read Measure, err error) {
	blobs, err := b.src.streamBlobs(b.opts.StreamBlobs, b.opts.StreamSize, compressed)
	if err != nil {
		return write, read, err
	}
	comp := resource.Identity
	if compressed {
		if !s.zstd {
			return write, read, fmt.Errorf("%s: does not advertise zstd compressed-blobs", s.name)
		}
		comp = resource.Zstd
		// Compressing is the client's work, done before timing starts
		// on every core.
		cores := runtime.GOMAXPROCS(0)
		wholes := make([][]byte, cores)
		if _, err := parallel(ctx, len(blobs), cores, func(ctx context.Context, w, i int) error {
			bl := blobs[i]
			wholes[w] = append(append(wholes[w][:0], bl.body...), bl.tail...)
			bl.zstd = b.enc.EncodeAll(wholes[w], nil)
			return nil
		}); err != nil {
			return write, read, err
		}
	}
	total := int64(len(blobs)) * int64(b.opts.StreamSize)
	bufs := make([][]byte, c)
	for i := range bufs {
		bufs[i] = make([]byte, writeChunk)
	}
	elapsed, err := parallel(ctx, len(blobs), c, func(ctx context.Context, w, i int) error {
		return s.writeBlob(ctx, blobs[i], comp, bufs[w])
	})
	if err != nil {
		return write, read, err
	}
	write = byteRate(len(blobs), total, elapsed)

	// Each worker decodes with its own synchronous decoder, made before
	// timing starts, as a client keeps its decoders.
	decs := make([]*zstd.Decoder, c)
	if compressed {
		for i := range decs {
			if decs[i], err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
				return write, read, fmt.Errorf("zstd decoder: %w", err)
			}
			defer decs[i].Close()
		}
	}
	elapsed, err = parallel(ctx, len(blobs), c, func(ctx context.Context, w, i int) error {
		return s.readBlob(ctx, blobs[i], comp, bufs[w], decs[w])
	})
	if err != nil {
		return write, read, err
	}
	return write, byteRate(len(blobs), total, elapsed), nil
}

// writeBlob uploads bl in writeChunk pieces, compressed as comp says;
// scratch holds a piece that is not a slice of the blob's shared body.
func (s *server) writeBlob(ctx context.Context, bl *streamBlob, comp resource.Compressor, scratch []byte) error {
	name := resource.WriteName(s.instance, uuid.NewString(), bl.d, comp)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream if an error cuts the upload short
	stream, err := s.bs.Write(ctx)
	if err != nil {
		return fmt.Errorf("%s: write %s: %w", s.name, name, err)
	}
	length := bl.size()
	if comp != resource.Identity {
		length = int64(len(bl.zstd))
	}
	for off := int64(0); off < length; {
		n := min(writeChunk, length-off)
		req := &bspb.WriteRequest{WriteOffset: off, FinishWrite: off+n == length}
		if off == 0 {
			req.ResourceName = name
		}
		if comp == resource.Identity {
			req.Data = bl.slice(off, int(n), scratch)
		} else {
			req.Data = bl.zstd[off : off+n]
		}
		// Send serializes req before returning, so scratch is free again.
		if err := stream.Send(req); err == io.EOF {
			break // the server ended the stream; CloseAndRecv says why
		} else if err != nil {
			return fmt.Errorf("%s: write %s at %d: %w", s.name, name, off, err)
		}
		off += n
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("%s: write %s: %w", s.name, name, err)
	}
	// REAPI: a finished upload commits the blob's size; a compressed one
	// may report -1 or, as ByteStream does, the bytes it received.
	got := resp.GetCommittedSize()
	if got != bl.size() && (comp == resource.Identity || got != -1 && got != length) {
		return fmt.Errorf("%s: write %s: %w: committed_size %d", s.name, name, ErrWrongAnswer, got)
	}
	return nil
}

// readBlob reads bl back, compressed as comp says, and checks every byte;
// buf is the worker's buffer and dec its decoder (compressed reads only).
func (s *server) readBlob(ctx context.Context, bl *streamBlob, comp resource.Compressor, buf []byte, dec *zstd.Decoder) error {
	name := resource.ReadName(s.instance, bl.d, comp)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream if a wrong byte cuts the read short
	stream, err := s.bs.Read(ctx, &bspb.ReadRequest{ResourceName: name})
	if err != nil {
		return fmt.Errorf("%s: read %s: %w", s.name, name, err)
	}
	wrong := func(off int64) error {
		return fmt.Errorf("%s: read %s: %w: the bytes at offset %d are not the blob's", s.name, name, ErrWrongAnswer, off)
	}
	var off int64
	if comp == resource.Identity {
		for {
			resp, err := stream.Recv()
			if err == io.EOF {
				break
			} else if err != nil {
				return fmt.Errorf("%s: read %s at %d: %w", s.name, name, off, err)
			}
			if !bl.matches(off, resp.GetData()) {
				return wrong(off)
			}
			off += int64(len(resp.GetData()))
		}
	} else {
		r := &readStream{stream: stream}
		if err := dec.Reset(r); err != nil {
			return fmt.Errorf("%s: read %s: %w: %v", s.name, name, ErrWrongAnswer, err)
		}
		defer dec.Reset(nil) // lets go of r
		for {
			n, err := io.ReadFull(dec, buf)
			if n > 0 && !bl.matches(off, buf[:n]) {
				return wrong(off)
			}
			off += int64(n)
			if r.err != nil {
				return fmt.Errorf("%s: read %s at %d: %w", s.name, name, off, r.err)
			} else if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			} else if err != nil {
				return fmt.Errorf("%s: read %s: %w: zstd: %v", s.name, name, ErrWrongAnswer, err)
			}
		}
	}
	if off != bl.size() {
		return fmt.Errorf("%s: read %s: %w: %d bytes, want %d", s.name, name, ErrWrongAnswer, off, bl.size())
	}
	return nil
}

// readStream is the content of a ByteStream Read as an io.Reader. err holds
// the first error other than the end of the stream.
type readStream struct {
	stream bspb.ByteStream_ReadClient
	rest   []byte
	err    error
}

func (r *readStream) Read(p []byte) (int, error) {
	for len(r.rest) == 0 {
		resp, err := r.stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				r.err = err
			}
			return 0, err
		}
		r.rest = resp.GetData()
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}
