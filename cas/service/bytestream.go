package service

import (
	"context"
	"errors"
	"fmt"
	"io"

	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/resource"
)

// readChunk is the size of ReadResponse messages: well under the 4 MiB
// that clients receive by default, and large enough that per-message costs
// vanish.
const readChunk = 1 << 20

// ByteStream implements the google.bytestream.ByteStream service for REAPI
// blobs, with zstd compressed-blobs and resumable writes.
type ByteStream struct {
	bspb.UnimplementedByteStreamServer
	opts    Options
	uploads *uploads
}

// NewByteStream returns the ByteStream service. Close it to wait for
// uploads in progress.
func NewByteStream(opts Options) (*ByteStream, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	return &ByteStream{opts: opts, uploads: &uploads{m: map[string]*upload{}}}, nil
}

// Close abandons interrupted uploads and waits for running ones to end.
func (s *ByteStream) Close() {
	s.uploads.mu.Lock()
	var detached []*upload
	for key, up := range s.uploads.m {
		up.mu.Lock()
		if !up.attached {
			delete(s.uploads.m, key)
			detached = append(detached, up)
		}
		up.mu.Unlock()
	}
	s.uploads.mu.Unlock()
	for _, up := range detached {
		up.feed.close(errAbandoned)
	}
	s.uploads.wg.Wait()
}

// Read implements bspb.ByteStreamServer.
func (s *ByteStream) Read(req *bspb.ReadRequest, stream bspb.ByteStream_ReadServer) error {
	ctx := stream.Context()
	name, err := resource.ParseRead(req.GetResourceName())
	if err != nil {
		return Status(err)
	}
	d, offset, limit := name.Digest, req.GetReadOffset(), req.GetReadLimit()
	switch {
	case offset < 0 || offset > d.Size:
		return status.Errorf(codes.OutOfRange, "read_offset %d is outside blob %v", offset, d)
	case limit < 0:
		return invalid("read_limit %d is negative", limit)
	case limit != 0 && name.Compressor != resource.Identity:
		return invalid("read_limit must be 0 for compressed-blobs reads (got %d)", limit)
	}
	rc, err := s.open(ctx, name, offset)
	if err != nil {
		return Status(err)
	}
	defer rc.Close()
	kind := "bytestream"
	if name.Compressor != resource.Identity {
		kind = "bytestream_zstd"
	}
	if m, ok := rc.(cas.Mapped); ok {
		// Send straight from the mapped file: one copy fewer.
		b := m.Bytes()
		if limit > 0 && limit < int64(len(b)) {
			b = b[:limit]
		}
		for len(b) > 0 {
			n := min(len(b), readChunk)
			if err := stream.Send(&bspb.ReadResponse{Data: b[:n]}); err != nil {
				return err
			}
			s.opts.Metrics.BytesRead.WithLabelValues(kind).Add(float64(n))
			b = b[n:]
		}
		return nil
	}
	var r io.Reader = rc
	if limit > 0 {
		r = io.LimitReader(rc, limit)
	}
	buf := make([]byte, min(readChunk, max(d.Size-offset, 1)))
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			// Send serializes the message before returning: buf is free
			// for the next chunk afterwards.
			if serr := stream.Send(&bspb.ReadResponse{Data: buf[:n]}); serr != nil {
				return serr
			}
			s.opts.Metrics.BytesRead.WithLabelValues(kind).Add(float64(n))
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return Status(fmt.Errorf("read %v: %w", d, err))
		}
	}
}

// open returns the bytes a Read of name from offset sends.
func (s *ByteStream) open(ctx context.Context, name resource.Name, offset int64) (io.ReadCloser, error) {
	if name.Compressor == resource.Identity {
		return s.opts.Blobs.Get(ctx, name.Digest, offset)
	}
	if zg, ok := s.opts.Blobs.(cas.ZstdGetter); ok && offset == 0 {
		return zg.GetZstd(ctx, name.Digest)
	}
	rc, err := s.opts.Blobs.Get(ctx, name.Digest, offset)
	if err != nil {
		return nil, err
	}
	return cas.ZstdCompress(rc), nil
}

// Write implements bspb.ByteStreamServer. A write of a blob already present
// finishes at once; an interrupted write can be resumed (QueryWriteStatus).
func (s *ByteStream) Write(stream bspb.ByteStream_WriteServer) error {
	ctx := stream.Context()
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	key := req.GetResourceName()
	name, err := resource.ParseWrite(key)
	if err != nil {
		return Status(err)
	}
	d := name.Digest
	// REAPI: a finished upload reports the blob's size, or -1 when it was
	// compressed (the compressed length is not known to the server).
	doneSize := d.Size
	if name.Compressor != resource.Identity {
		doneSize = -1
	}
	missing, err := s.opts.Blobs.FindMissing(ctx, []digest.Digest{d})
	if err != nil {
		return Status(err)
	}
	if len(missing) == 0 && (!d.IsEmpty() || name.Compressor == resource.Identity) {
		return stream.SendAndClose(&bspb.WriteResponse{CommittedSize: doneSize})
	}
	up, gen, err := s.uploads.attach(ctx, key, name, req.GetWriteOffset(), s.opts.Blobs, s.opts.Chunks)
	if err != nil {
		return Status(err)
	}
	kind := "bytestream"
	if name.Compressor != resource.Identity {
		kind = "bytestream_zstd"
	}
	for {
		if rn := req.GetResourceName(); rn != "" && rn != key {
			s.uploads.detach(up, gen)
			return invalid("resource_name changed within one stream from %q to %q", key, rn)
		}
		n, err := up.write(ctx, gen, req.GetWriteOffset(), req.GetData())
		switch {
		case errors.Is(err, errSuperseded):
			return status.Error(codes.Aborted, err.Error())
		case err != nil && ctx.Err() != nil:
			s.uploads.detach(up, gen)
			return Status(ctx.Err())
		case errors.Is(err, errFeedStopped):
			// The Put ended early: it failed, or the blob was stored by
			// another upload meanwhile.
			return s.end(stream, key, up, doneSize, false)
		case err != nil:
			s.uploads.detach(up, gen)
			return Status(err)
		}
		s.opts.Metrics.BytesWritten.WithLabelValues(kind).Add(float64(n))
		if req.GetFinishWrite() {
			up.feed.close(io.EOF)
			return s.end(stream, key, up, doneSize, true)
		}
		req, err = stream.Recv()
		if err == io.EOF {
			s.uploads.detach(up, gen)
			return invalid("stream of %s ended without finish_write; resume it after QueryWriteStatus", key)
		}
		if err != nil {
			s.uploads.detach(up, gen)
			return err
		}
	}
}

// end waits for the upload's Put and reports its result: doneSize for an
// upload cut short because the blob became present, the final offset for a
// finished one.
func (s *ByteStream) end(stream bspb.ByteStream_WriteServer, key string, up *upload, doneSize int64, finished bool) error {
	<-up.done
	s.uploads.finish(key, up)
	if up.err != nil {
		return Status(up.err)
	}
	if finished && up.name.Compressor != resource.Identity {
		// A compressed upload that ran to its end reports where it ended:
		// the offset its client would send next.
		up.mu.Lock()
		doneSize = up.committed
		up.mu.Unlock()
	}
	return stream.SendAndClose(&bspb.WriteResponse{CommittedSize: doneSize})
}

// QueryWriteStatus implements bspb.ByteStreamServer.
func (s *ByteStream) QueryWriteStatus(ctx context.Context, req *bspb.QueryWriteStatusRequest) (*bspb.QueryWriteStatusResponse, error) {
	name, err := resource.ParseWrite(req.GetResourceName())
	if err != nil {
		return nil, Status(err)
	}
	missing, err := s.opts.Blobs.FindMissing(ctx, []digest.Digest{name.Digest})
	if err != nil {
		return nil, Status(err)
	}
	if len(missing) == 0 {
		return &bspb.QueryWriteStatusResponse{CommittedSize: name.Digest.Size, Complete: true}, nil
	}
	n, ok := s.uploads.committed(req.GetResourceName())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no upload of %s is in progress", req.GetResourceName())
	}
	return &bspb.QueryWriteStatusResponse{CommittedSize: n}, nil
}
