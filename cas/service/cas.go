package service

import (
	"bytes"
	"context"
	"fmt"
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/resource"
)

// CAS implements the REAPI ContentAddressableStorage service.
type CAS struct {
	repb.UnimplementedContentAddressableStorageServer
	opts  Options
	trees *treeOrders
}

// NewCAS returns the ContentAddressableStorage service.
func NewCAS(opts Options) (*CAS, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	return &CAS{opts: opts, trees: newTreeOrders()}, nil
}

// FindMissingBlobs implements repb.ContentAddressableStorageServer.
func (s *CAS) FindMissingBlobs(ctx context.Context, req *repb.FindMissingBlobsRequest) (*repb.FindMissingBlobsResponse, error) {
	if err := resource.ValidateInstance(req.GetInstanceName()); err != nil {
		return nil, Status(err)
	}
	ds := make([]digest.Digest, len(req.GetBlobDigests()))
	for i, p := range req.GetBlobDigests() {
		d, err := digest.FromProto(p)
		if err != nil {
			return nil, invalid("blob_digests[%d]: %v", i, err)
		}
		ds[i] = d
	}
	missing, err := s.opts.Blobs.FindMissing(ctx, ds)
	if err != nil {
		return nil, Status(err)
	}
	s.opts.Metrics.BlobsMissed.Add(float64(len(missing)))
	s.opts.Metrics.BlobsFound.Add(float64(len(ds) - len(missing)))
	resp := &repb.FindMissingBlobsResponse{MissingBlobDigests: make([]*repb.Digest, len(missing))}
	for i, d := range missing {
		resp.MissingBlobDigests[i] = d.Proto()
	}
	return resp, nil
}

// BatchUpdateBlobs implements repb.ContentAddressableStorageServer. Blobs
// are checked one by one (a bad one fails alone) and stored with one
// durable commit.
func (s *CAS) BatchUpdateBlobs(ctx context.Context, req *repb.BatchUpdateBlobsRequest) (*repb.BatchUpdateBlobsResponse, error) {
	if err := resource.ValidateInstance(req.GetInstanceName()); err != nil {
		return nil, Status(err)
	}
	resp := &repb.BatchUpdateBlobsResponse{Responses: make([]*repb.BatchUpdateBlobsResponse_Response, len(req.GetRequests()))}
	var blobs []cas.Blob
	var slots []int
	var total int64
	for i, r := range req.GetRequests() {
		out := &repb.BatchUpdateBlobsResponse_Response{Digest: r.GetDigest(), Status: &status.Status{}}
		resp.Responses[i] = out
		d, err := digest.FromProto(r.GetDigest())
		if err != nil {
			out.Status = rpcStatus(codes.InvalidArgument, fmt.Sprintf("requests[%d]: %v", i, err))
			continue
		}
		if total += d.Size; total > s.opts.MaxBatchBytes {
			return nil, invalid("batch holds more than max_batch_total_size_bytes (%d); upload large blobs with ByteStream", s.opts.MaxBatchBytes)
		}
		data, err := batchData(d, r)
		if err != nil {
			out.Status = rpcStatus(Code(err), fmt.Sprintf("requests[%d]: %v", i, err))
			continue
		}
		blobs = append(blobs, cas.Blob{Digest: d, Data: data})
		slots = append(slots, i)
		s.opts.Metrics.BytesWritten.WithLabelValues("batch").Add(float64(len(r.GetData())))
	}
	for j, err := range cas.PutBatch(ctx, s.opts.Blobs, blobs) {
		if err != nil {
			resp.Responses[slots[j]].Status = rpcStatus(Code(err), err.Error())
		}
	}
	return resp, nil
}

// batchData returns the uncompressed content of one BatchUpdateBlobs entry.
func batchData(d digest.Digest, r *repb.BatchUpdateBlobsRequest_Request) ([]byte, error) {
	switch r.GetCompressor() {
	case repb.Compressor_IDENTITY:
		if int64(len(r.GetData())) != d.Size {
			return nil, fmt.Errorf("%w: %v: data has %d bytes, digest says %d", digest.ErrMismatch, d, len(r.GetData()), d.Size)
		}
		return r.GetData(), nil
	case repb.Compressor_ZSTD:
		z, err := cas.ZstdDecompress(bytes.NewReader(r.GetData()))
		if err != nil {
			return nil, err
		}
		defer z.Close()
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, io.LimitReader(z, d.Size+1)); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	default:
		return nil, fmt.Errorf("%w: compressor %v is not supported", digest.ErrInvalid, r.GetCompressor())
	}
}

// BatchReadBlobs implements repb.ContentAddressableStorageServer.
func (s *CAS) BatchReadBlobs(ctx context.Context, req *repb.BatchReadBlobsRequest) (*repb.BatchReadBlobsResponse, error) {
	if err := resource.ValidateInstance(req.GetInstanceName()); err != nil {
		return nil, Status(err)
	}
	ds := make([]digest.Digest, len(req.GetDigests()))
	var total int64
	for i, p := range req.GetDigests() {
		d, err := digest.FromProto(p)
		if err != nil {
			return nil, invalid("digests[%d]: %v", i, err)
		}
		if total += d.Size; total > s.opts.MaxBatchBytes {
			return nil, invalid("batch asks for more than max_batch_total_size_bytes (%d); read large blobs with ByteStream", s.opts.MaxBatchBytes)
		}
		ds[i] = d
	}
	// Each entry of the response also carries its digest and a status:
	// many tiny blobs can make a response too large for the client even
	// when their content is small.
	if size := total + int64(len(ds))*batchEntryOverhead; size > maxBatchResponseBytes {
		return nil, invalid("a response to %d blobs would take about %d bytes, over the %d a client receives; ask for fewer blobs per batch", len(ds), size, maxBatchResponseBytes)
	}
	resp := &repb.BatchReadBlobsResponse{Responses: make([]*repb.BatchReadBlobsResponse_Response, len(ds))}
	datas, errs := readBatch(ctx, s.opts.Blobs, ds)
	for i, data := range datas {
		out := &repb.BatchReadBlobsResponse_Response{Digest: req.GetDigests()[i], Status: &status.Status{}}
		resp.Responses[i] = out
		if err := errs[i]; err != nil {
			out.Status = rpcStatus(Code(err), err.Error())
			continue
		}
		out.Data = data
		s.opts.Metrics.BytesRead.WithLabelValues("batch").Add(float64(len(data)))
	}
	return resp, nil
}

// readBatch reads the blobs ds with g's GetBatch when it has one, else
// with one Get each.
func readBatch(ctx context.Context, g cas.BlobGetter, ds []digest.Digest) ([][]byte, []error) {
	if bg, ok := g.(cas.BatchGetter); ok {
		return bg.GetBatch(ctx, ds)
	}
	datas := make([][]byte, len(ds))
	errs := make([]error, len(ds))
	for i, d := range ds {
		datas[i], errs[i] = cas.ReadAll(ctx, g, d)
	}
	return datas, errs
}

const (
	// batchEntryOverhead is what one entry of a BatchReadBlobsResponse
	// costs besides the blob: digest (64 hex digits, size), field tags and
	// lengths, an empty status.
	batchEntryOverhead = 100
	// maxBatchResponseBytes is gRPC's default 4 MiB receive limit of
	// clients, less room for framing.
	maxBatchResponseBytes = 4<<20 - 16<<10
)

func rpcStatus(c codes.Code, msg string) *status.Status {
	return &status.Status{Code: int32(c), Message: msg}
}
