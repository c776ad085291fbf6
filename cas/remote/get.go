package remote

import (
	"bytes"
	"context"
	"fmt"
	"io"

	bspb "google.golang.org/genproto/googleapis/bytestream"

	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/resource"
)

// Get implements cas.BlobGetter. A blob within the batch limit is read whole
// with BatchReadBlobs and verified before Get returns; a larger one streams
// from a ByteStream Read, and the reader holds back the last chunk until the
// whole content has been verified, so a reader that stops at the first
// error (as io.ReadFull and io.Copy do) never accepts a wrong blob: the
// failure is an error wrapping digest.ErrMismatch.
//
// A blob can only be verified whole, so Get at a non-zero offset still
// receives and hashes the bytes before offset, and returns those after it.
// The caller closes the reader, which ends the stream.
func (c *Client) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	if offset < 0 || offset > d.Size {
		return nil, fmt.Errorf("read %v at offset %d: %w", d, offset, digest.ErrInvalid)
	}
	if d.IsEmpty() {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	limit, err := c.maxBatchBlob(ctx)
	if err != nil {
		return nil, err
	}
	if d.Size <= limit {
		data, errs := c.readBlobs(ctx, []digest.Digest{d})
		if errs[0] != nil {
			return nil, errs[0]
		}
		return io.NopCloser(bytes.NewReader(data[0][offset:])), nil
	}
	r, err := c.read(ctx, d)
	if err != nil {
		return nil, err
	}
	if _, err := io.CopyN(io.Discard, r, offset); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// read starts a ByteStream Read of the whole blob d. It waits for the first
// response, so that a missing blob is an error of read, not of the first
// Read.
func (c *Client) read(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.bs.Read(ctx, &bspb.ReadRequest{ResourceName: resource.ReadName(c.opts.Instance, d, resource.Identity)})
	if err != nil {
		cancel()
		return nil, c.readError(ctx, d, err)
	}
	r := &streamReader{c: c, ctx: ctx, cancel: cancel, stream: stream, d: d, v: digest.NewVerifier(d)}
	if err := r.fill(); err != nil {
		cancel()
		return nil, err
	}
	if r.err != nil && r.err != io.EOF {
		cancel()
		return nil, r.err
	}
	return r, nil
}

// streamReader yields a ByteStream Read's content, verified: it hands out a
// chunk only once it is sure the chunk is not the end of a wrong blob.
type streamReader struct {
	c      *Client
	ctx    context.Context
	cancel context.CancelFunc
	stream bspb.ByteStream_ReadClient
	d      digest.Digest
	v      *digest.Verifier
	cur    []byte // received, checked as far as can be, not yet read
	err    error  // returned once cur is drained: io.EOF or a failure
}

// fill receives the next chunk into cur. When the verifier has seen the
// whole blob, it checks that the stream ends there and that the content is
// right before the last chunk becomes readable.
func (r *streamReader) fill() error {
	for len(r.cur) == 0 && r.err == nil {
		resp, err := r.stream.Recv()
		if err == io.EOF {
			// Ended before the whole blob came: v reports the short count.
			r.err = r.mismatch(r.v.Check())
			return nil
		}
		if err != nil {
			return r.c.readError(r.ctx, r.d, err)
		}
		if _, err := r.v.Write(resp.GetData()); err != nil {
			return r.mismatch(err)
		}
		r.cur = resp.GetData()
		if r.v.Written() == r.d.Size {
			if err := r.end(); err != nil {
				r.cur = nil
				return err
			}
			r.err = io.EOF
		}
	}
	return nil
}

// end checks, once d.Size bytes came, that no more follow and that they
// are d's content.
func (r *streamReader) end() error {
	for {
		resp, err := r.stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return r.c.readError(r.ctx, r.d, err)
		}
		if _, err := r.v.Write(resp.GetData()); err != nil {
			return r.mismatch(err)
		}
	}
	return r.mismatch(r.v.Check())
}

func (r *streamReader) mismatch(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("blob %v from %s: %w", r.d, r.c.target, err)
}

// Read implements io.Reader.
func (r *streamReader) Read(p []byte) (int, error) {
	if len(r.cur) == 0 && r.err == nil {
		if err := r.fill(); err != nil {
			r.err = err
		}
	}
	if len(r.cur) == 0 {
		return 0, r.err
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close ends the stream.
func (r *streamReader) Close() error {
	r.cancel()
	r.cur, r.err = nil, io.ErrClosedPipe
	return nil
}
