package bench

import (
	"io"

	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mound-build/mound/cas/resource"
)

// floorReadChunk is the size of the floor's ReadResponse messages: well
// under the 4 MiB clients receive by default, large enough that the cost
// of each message vanishes.
const floorReadChunk = 1 << 20

type floorByteStream struct {
	bspb.UnimplementedByteStreamServer
	s *floorStore
}

func (b floorByteStream) Read(req *bspb.ReadRequest, stream bspb.ByteStream_ReadServer) error {
	name, err := resource.ParseRead(req.GetResourceName())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	var data []byte
	var ok bool
	if name.Compressor == resource.Zstd {
		data, ok = b.s.compressed(name.Digest)
	} else {
		data, ok = b.s.plain(name.Digest)
	}
	if !ok {
		return status.Errorf(codes.NotFound, "blob %v not found", name.Digest)
	}
	off, limit := req.GetReadOffset(), req.GetReadLimit()
	if off < 0 || off > int64(len(data)) || limit < 0 {
		return status.Errorf(codes.OutOfRange, "read_offset %d, read_limit %d outside %d bytes", off, limit, len(data))
	}
	data = data[off:]
	if limit > 0 && limit < int64(len(data)) {
		data = data[:limit]
	}
	for len(data) > 0 {
		n := min(len(data), floorReadChunk)
		if err := stream.Send(&bspb.ReadResponse{Data: data[:n]}); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

func (b floorByteStream) Write(stream bspb.ByteStream_WriteServer) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	name, err := resource.ParseWrite(req.GetResourceName())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if req.GetWriteOffset() != 0 {
		return status.Errorf(codes.Unimplemented, "the floor does not resume writes (write_offset %d)", req.GetWriteOffset())
	}
	capacity := name.Digest.Size
	if name.Compressor == resource.Zstd {
		capacity /= 2
	}
	buf := make([]byte, 0, capacity)
	for {
		if req.GetWriteOffset() != int64(len(buf)) {
			return status.Errorf(codes.InvalidArgument, "write_offset %d, expected %d", req.GetWriteOffset(), len(buf))
		}
		buf = append(buf, req.GetData()...)
		if req.GetFinishWrite() {
			break
		}
		if req, err = stream.Recv(); err == io.EOF {
			return status.Error(codes.InvalidArgument, "stream ended without finish_write")
		} else if err != nil {
			return err
		}
	}
	if name.Compressor == resource.Zstd {
		b.s.putZstd(name.Digest, buf)
	} else {
		if int64(len(buf)) != name.Digest.Size {
			return status.Errorf(codes.InvalidArgument, "received %d bytes of blob %v", len(buf), name.Digest)
		}
		b.s.put(name.Digest, buf)
	}
	return stream.SendAndClose(&bspb.WriteResponse{CommittedSize: int64(len(buf))})
}
