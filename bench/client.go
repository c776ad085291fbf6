package bench

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// batchMessageLimit bounds the estimated size of one batch request or
// response: gRPC's default 4 MiB receive limit, which the bench keeps as
// clients such as Bazel do, less room for headers and framing.
const batchMessageLimit = 4<<20 - 64<<10

// batchBlobOverhead is a generous estimate of the bytes a blob adds to a
// batch message beyond its content: digest (64 hex digits and a size),
// status and field tags.
const batchBlobOverhead = 128

// maxBatchBlob is the largest batch blob the options accept, far below any
// sensible max_batch_total_size_bytes.
const maxBatchBlob = 1 << 20

// server is one REAPI endpoint under measurement, with the per-server
// state the workloads set up once.
type server struct {
	name     string // "target" or "floor", for messages
	addr     string
	instance string
	conn     *grpc.ClientConn
	cas      repb.ContentAddressableStorageClient
	ac       repb.ActionCacheClient
	bs       bspb.ByteStreamClient
	exec     repb.ExecutionClient
	// batchBytes bounds the content of one batch request: the server's
	// max_batch_total_size_bytes, capped by batchMessageLimit.
	batchBytes int64
	// zstd reports whether the server advertises zstd compressed-blobs.
	zstd bool
	// executes reports whether the server advertises exec_enabled.
	executes bool

	findMissing *findMissingSet // set up by the first FindMissingBlobs run
	acBlobs     *acBlobs        // set up by the first ActionCache run
}

// dial connects to addr and reads its capabilities. One connection carries
// every request, as one Bazel client's does; close with close.
func dial(ctx context.Context, name, addr, instance string) (*server, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", name, addr, err)
	}
	s := &server{
		name: name, addr: addr, instance: instance, conn: conn,
		cas:  repb.NewContentAddressableStorageClient(conn),
		ac:   repb.NewActionCacheClient(conn),
		bs:   bspb.NewByteStreamClient(conn),
		exec: repb.NewExecutionClient(conn),
	}
	caps, err := repb.NewCapabilitiesClient(conn).GetCapabilities(ctx, &repb.GetCapabilitiesRequest{InstanceName: instance})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s %s: GetCapabilities: %w", name, addr, err)
	}
	cc := caps.GetCacheCapabilities()
	if !slices.Contains(cc.GetDigestFunctions(), repb.DigestFunction_SHA256) {
		conn.Close()
		return nil, fmt.Errorf("%s %s: does not offer SHA-256 digests (offers %v)", name, addr, cc.GetDigestFunctions())
	}
	s.batchBytes = batchMessageLimit
	if m := cc.GetMaxBatchTotalSizeBytes(); m > 0 {
		s.batchBytes = min(m, batchMessageLimit)
	}
	s.zstd = slices.Contains(cc.GetSupportedCompressors(), repb.Compressor_ZSTD)
	s.executes = caps.GetExecutionCapabilities().GetExecEnabled()
	return s, nil
}

func (s *server) close() { s.conn.Close() }

// batches splits blobs into batches that fit s's limits, in order.
func (s *server) batches(blobs []blob) [][]blob {
	var out [][]blob
	start, content, estimate := 0, int64(0), int64(0)
	for i, b := range blobs {
		size := b.d.Size
		if i > start && (content+size > s.batchBytes || estimate+size+batchBlobOverhead > batchMessageLimit) {
			out = append(out, blobs[start:i])
			start, content, estimate = i, 0, 0
		}
		content += size
		estimate += size + batchBlobOverhead
	}
	if start < len(blobs) {
		out = append(out, blobs[start:])
	}
	return out
}

// update stores one batch with BatchUpdateBlobs and checks that the server
// stored every blob.
func (s *server) update(ctx context.Context, batch []blob) error {
	req := &repb.BatchUpdateBlobsRequest{InstanceName: s.instance}
	for _, b := range batch {
		req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: b.d.Proto(), Data: b.data})
	}
	resp, err := s.cas.BatchUpdateBlobs(ctx, req)
	if err != nil {
		return fmt.Errorf("%s: BatchUpdateBlobs of %d blobs: %w", s.name, len(batch), err)
	}
	if len(resp.GetResponses()) != len(batch) {
		return fmt.Errorf("%s: BatchUpdateBlobs of %d blobs: %w: %d responses", s.name, len(batch), ErrWrongAnswer, len(resp.GetResponses()))
	}
	for i, r := range resp.GetResponses() {
		if c := codes.Code(r.GetStatus().GetCode()); c != codes.OK {
			return fmt.Errorf("%s: BatchUpdateBlobs of %v: %v: %s", s.name, batch[i].d, c, r.GetStatus().GetMessage())
		}
	}
	return nil
}

// read fetches one batch with BatchReadBlobs and checks every blob's bytes.
func (s *server) read(ctx context.Context, batch []blob) error {
	req := &repb.BatchReadBlobsRequest{InstanceName: s.instance}
	want := make(map[string]blob, len(batch))
	for _, b := range batch {
		req.Digests = append(req.Digests, b.d.Proto())
		want[b.d.Hash.String()] = b
	}
	resp, err := s.cas.BatchReadBlobs(ctx, req)
	if err != nil {
		return fmt.Errorf("%s: BatchReadBlobs of %d blobs: %w", s.name, len(batch), err)
	}
	if len(resp.GetResponses()) != len(batch) {
		return fmt.Errorf("%s: BatchReadBlobs of %d blobs: %w: %d responses", s.name, len(batch), ErrWrongAnswer, len(resp.GetResponses()))
	}
	for _, r := range resp.GetResponses() {
		hash := r.GetDigest().GetHash()
		b, ok := want[hash]
		if c := codes.Code(r.GetStatus().GetCode()); ok && c != codes.OK {
			return fmt.Errorf("%s: BatchReadBlobs of %v: %v: %s", s.name, b.d, c, r.GetStatus().GetMessage())
		}
		if !ok || !bytes.Equal(r.GetData(), b.data) {
			return fmt.Errorf("%s: BatchReadBlobs: %w: blob %s has the wrong bytes or was not asked for", s.name, ErrWrongAnswer, hash)
		}
		delete(want, hash)
	}
	return nil
}
