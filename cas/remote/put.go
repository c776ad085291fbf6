package remote

import (
	"context"
	"errors"
	"fmt"
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/google/uuid"
	bspb "google.golang.org/genproto/googleapis/bytestream"

	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/resource"
)

// Put implements cas.BlobPutter: blobs within the batch limit go in one
// BatchUpdateBlobs request, larger ones through a ByteStream Write in
// chunkBytes chunks, read from r as they are sent. The content is checked
// against d as it is read; on a mismatch (digest.ErrMismatch) or a read
// error the upload is abandoned before it is finished, so the server stores
// nothing. The empty blob is checked but never sent: every server has it.
func (c *Client) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	if d.IsEmpty() {
		return readVerified(r, d, nil)
	}
	limit, err := c.maxBatchBlob(ctx)
	if err != nil {
		return err
	}
	if d.Size > limit {
		return c.write(ctx, d, r)
	}
	data := make([]byte, d.Size)
	if err := readVerified(r, d, data); err != nil {
		return err
	}
	return c.updateBlobs(ctx, []blob{{d: d, data: data}})[0]
}

// readVerified reads exactly d's content from r into buf (len(buf) ==
// d.Size) and checks that r ends there and that the bytes are d's.
func readVerified(r io.Reader, d digest.Digest, buf []byte) error {
	v := digest.NewVerifier(d)
	n, err := io.ReadFull(r, buf)
	v.Write(buf[:n]) // cannot fail: buf holds d.Size bytes
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return v.Check() // too short: a mismatch
	case err != nil:
		return fmt.Errorf("read content of %v: %w", d, err)
	}
	if err := checkEnd(r, v); err != nil {
		return err
	}
	return v.Check()
}

// checkEnd reads one more byte from r, which must be at its end: a byte
// there makes v fail, as the content is longer than its digest says.
func checkEnd(r io.Reader, v *digest.Verifier) error {
	var extra [1]byte
	n, err := io.ReadFull(r, extra[:])
	if n > 0 {
		if _, werr := v.Write(extra[:n]); werr != nil {
			return werr
		}
	}
	if err != nil && err != io.EOF {
		return fmt.Errorf("read content: %w", err)
	}
	return nil
}

// write uploads d with one ByteStream Write from r. Leaving before the
// final request cancels the stream: the server then drops the partial
// upload.
func (c *Client) write(ctx context.Context, d digest.Digest, r io.Reader) error {
	what := fmt.Sprintf("write %v", d)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.bs.Write(ctx)
	if err != nil {
		return c.rpcError(ctx, what, err)
	}
	name := resource.WriteName(c.opts.Instance, uuid.NewString(), d, resource.Identity)
	v := digest.NewVerifier(d)
	for off := int64(0); ; {
		// A new buffer per chunk: gRPC may hold on to a sent message (stats
		// handlers of the caller's connection read it lazily).
		buf := make([]byte, min(chunkBytes, d.Size-off))
		n, err := io.ReadFull(r, buf)
		v.Write(buf[:n]) // cannot fail: buf ends at d.Size
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return v.Check()
		case err != nil:
			return fmt.Errorf("read content of %v: %w", d, err)
		}
		last := off+int64(n) == d.Size
		if last {
			// Only verified content is ever finished on the server.
			if err := checkEnd(r, v); err != nil {
				return err
			}
			if err := v.Check(); err != nil {
				return err
			}
		}
		req := &bspb.WriteRequest{WriteOffset: off, Data: buf, FinishWrite: last}
		if off == 0 {
			req.ResourceName = name
		}
		if err := stream.Send(req); err == io.EOF {
			// The server ended the stream: it already has the blob, or it
			// failed. CloseAndRecv tells which.
			break
		} else if err != nil {
			return c.rpcError(ctx, what, err)
		}
		off += int64(n)
		if last {
			break
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return c.rpcError(ctx, what, err)
	}
	if resp.GetCommittedSize() != d.Size {
		return fmt.Errorf("%s on %s: server committed %d bytes of %d", what, c.target, resp.GetCommittedSize(), d.Size)
	}
	return nil
}

// blob is a small blob in a batch, with its content.
type blob struct {
	d    digest.Digest
	data []byte
}

// updateBlobs sends blobs in one BatchUpdateBlobs request and returns one
// error per blob. The caller has checked each blob's content and keeps the
// request under the batch limit.
func (c *Client) updateBlobs(ctx context.Context, blobs []blob) []error {
	errs := make([]error, len(blobs))
	req := &repb.BatchUpdateBlobsRequest{InstanceName: c.opts.Instance, Requests: make([]*repb.BatchUpdateBlobsRequest_Request, len(blobs))}
	for i, b := range blobs {
		req.Requests[i] = &repb.BatchUpdateBlobsRequest_Request{Digest: b.d.Proto(), Data: b.data}
	}
	resp, err := c.cas.BatchUpdateBlobs(ctx, req)
	if err != nil {
		err = c.rpcError(ctx, fmt.Sprintf("upload of %d blobs", len(blobs)), err)
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	answers := make(map[digest.Digest]error, len(blobs))
	for _, r := range resp.GetResponses() {
		d, err := digest.FromProto(r.GetDigest())
		if err != nil {
			continue // not one of ours; the blob it was for stays unanswered
		}
		if err := statusError(r.GetStatus()); err != nil {
			answers[d] = c.rpcError(ctx, fmt.Sprintf("upload %v", d), err)
		} else {
			answers[d] = nil
		}
	}
	for i, b := range blobs {
		err, ok := answers[b.d]
		if !ok {
			err = fmt.Errorf("upload %v on %s: %w", b.d, c.target, errNoAnswer)
		}
		errs[i] = err
	}
	return errs
}

// errNoAnswer is a batch response that leaves out a blob of the request.
var errNoAnswer = errors.New("server's batch response does not mention the blob")
