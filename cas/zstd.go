package cas

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Encoders and decoders are costly to build and hold large buffers; pools
// let concurrent streams share them. Each is used by one stream at a time.
var (
	encoders = sync.Pool{New: func() any {
		// SpeedFastest: compressing on the fly is on the read path of a
		// client that asked for compressed bytes to save time, not space.
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		if err != nil {
			panic(err)
		}
		return e
	}}
	decoders = sync.Pool{New: func() any {
		// Concurrency 1 decodes synchronously in the caller's goroutine.
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			panic(err)
		}
		return d
	}}
)

// ErrCorrupt is wrapped by errors decoding a malformed zstd stream.
var ErrCorrupt = errors.New("malformed zstd stream")

// ZstdDecompress returns a reader of src's decompressed content. Close
// releases the decoder; it does not close src.
func ZstdDecompress(src io.Reader) (io.ReadCloser, error) {
	d := decoders.Get().(*zstd.Decoder)
	if err := d.Reset(src); err != nil {
		decoders.Put(d)
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return &decompressor{d: d}, nil
}

type decompressor struct{ d *zstd.Decoder }

func (r *decompressor) Read(p []byte) (int, error) {
	if r.d == nil {
		return 0, io.ErrClosedPipe
	}
	n, err := r.d.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return n, err
}

func (r *decompressor) Close() error {
	if r.d != nil {
		r.d.Reset(nil)
		decoders.Put(r.d)
		r.d = nil
	}
	return nil
}

// ZstdCompress returns a reader of src compressed as one zstd stream,
// compressing as it is read (no goroutine). Close closes src.
func ZstdCompress(src io.ReadCloser) io.ReadCloser {
	e := encoders.Get().(*zstd.Encoder)
	c := &compressor{src: src, e: e, in: make([]byte, 256<<10)}
	e.Reset(&c.out)
	return c
}

type compressor struct {
	src  io.ReadCloser
	e    *zstd.Encoder
	in   []byte
	out  bytes.Buffer
	done bool
}

func (c *compressor) Read(p []byte) (int, error) {
	for c.out.Len() == 0 {
		if c.done {
			return 0, io.EOF
		}
		if c.e == nil {
			return 0, io.ErrClosedPipe
		}
		n, err := c.src.Read(c.in)
		if n > 0 {
			if _, werr := c.e.Write(c.in[:n]); werr != nil {
				return 0, werr
			}
		}
		switch {
		case err == io.EOF:
			if cerr := c.e.Close(); cerr != nil {
				return 0, cerr
			}
			c.done = true
		case err != nil:
			return 0, err
		}
	}
	return c.out.Read(p)
}

func (c *compressor) Close() error {
	if c.e != nil {
		c.e.Reset(nil)
		encoders.Put(c.e)
		c.e = nil
	}
	return c.src.Close()
}
