package bench

import (
	"context"
	"fmt"
	"net"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/bazelbuild/remote-apis/build/bazel/semver"
	"github.com/klauspost/compress/zstd"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/mound-build/mound/cas/digest"
)

// floorMaxBatchBytes is the floor's max_batch_total_size_bytes: like a real
// server's, below gRPC's default 4 MiB receive limit with room for message
// overhead, so that the batch workloads send batches of the same size to
// the floor as to a well configured server.
const floorMaxBatchBytes = 4<<20 - 256<<10

// floorMaxRecvBytes is the floor's gRPC receive limit: large enough for any
// batch a client sends within floorMaxBatchBytes.
const floorMaxRecvBytes = 8 << 20

// Floor is the floor REAPI server: Capabilities, CAS, ByteStream and
// ActionCache over maps under one mutex, without hashing, verification or
// disk. It answers correctly only for well-behaved clients; it exists to
// show the cost of gRPC alone. Start with StartFloor, end with Stop.
type Floor struct {
	lis   net.Listener
	grpc  *grpc.Server
	store *floorStore
	// served receives Serve's result when the server stops.
	served chan error
}

// StartFloor starts a Floor on a new 127.0.0.1 TCP port: real loopback
// TCP, like a server in another process, not an in-memory pipe.
func StartFloor() (*Floor, error) { return startFloor(false) }

// startFloor starts a Floor; a corrupt one changes whatever it is asked to
// read, for tests that the workloads detect wrong answers.
func startFloor(corrupt bool) (*Floor, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("floor: listen: %w", err)
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		lis.Close()
		return nil, fmt.Errorf("floor: zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		lis.Close()
		return nil, fmt.Errorf("floor: zstd decoder: %w", err)
	}
	st := &floorStore{
		corrupt: corrupt,
		enc:     enc,
		dec:     dec,
		blobs:   map[digest.Digest][]byte{},
		zstd:    map[digest.Digest][]byte{},
		actions: map[digest.Digest]*repb.ActionResult{},
	}
	g := grpc.NewServer(grpc.MaxRecvMsgSize(floorMaxRecvBytes))
	repb.RegisterCapabilitiesServer(g, floorCapabilities{})
	repb.RegisterContentAddressableStorageServer(g, floorCAS{s: st})
	repb.RegisterActionCacheServer(g, floorActionCache{s: st})
	bspb.RegisterByteStreamServer(g, &floorByteStream{s: st})
	f := &Floor{lis: lis, grpc: g, store: st, served: make(chan error, 1)}
	go func() { f.served <- g.Serve(lis) }()
	return f, nil
}

// Addr returns the floor's host:port.
func (f *Floor) Addr() string { return f.lis.Addr().String() }

// Stop closes every connection and waits for the server to end.
func (f *Floor) Stop() {
	f.grpc.Stop()
	<-f.served
	f.store.dec.Close()
}

// floorStore holds the floor's content. Safe for concurrent use.
type floorStore struct {
	corrupt bool // set before serving, never changed
	// enc and dec are safe for concurrent EncodeAll and DecodeAll.
	enc *zstd.Encoder
	dec *zstd.Decoder

	mu sync.RWMutex
	// blobs holds content written uncompressed, zstd content written
	// compressed, kept as received.
	blobs, zstd map[digest.Digest][]byte
	actions     map[digest.Digest]*repb.ActionResult
}

func (s *floorStore) has(d digest.Digest) bool {
	if d.IsEmpty() {
		return true
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.blobs[d]
	if !ok {
		_, ok = s.zstd[d]
	}
	return ok
}

// plain returns d's content; the caller must not modify it.
func (s *floorStore) plain(d digest.Digest) ([]byte, bool) {
	s.mu.RLock()
	b, ok := s.blobs[d]
	z, zok := s.zstd[d]
	s.mu.RUnlock()
	switch {
	case ok:
	case zok:
		var err error
		if b, err = s.dec.DecodeAll(z, make([]byte, 0, d.Size)); err != nil {
			return nil, false
		}
	case d.IsEmpty():
	default:
		return nil, false
	}
	if s.corrupt && len(b) > 0 {
		b = append([]byte(nil), b...)
		b[len(b)/2] ^= 1
	}
	return b, true
}

// compressed returns d's content compressed with zstd: as written when it
// was written compressed, else compressed now.
func (s *floorStore) compressed(d digest.Digest) ([]byte, bool) {
	s.mu.RLock()
	z, ok := s.zstd[d]
	s.mu.RUnlock()
	if ok && !s.corrupt {
		return z, true
	}
	b, ok := s.plain(d)
	if !ok {
		return nil, false
	}
	return s.enc.EncodeAll(b, nil), true
}

// reset drops everything stored.
func (s *floorStore) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs = map[digest.Digest][]byte{}
	s.zstd = map[digest.Digest][]byte{}
	s.actions = map[digest.Digest]*repb.ActionResult{}
}

func (s *floorStore) put(d digest.Digest, b []byte) {
	s.mu.Lock()
	s.blobs[d] = b
	s.mu.Unlock()
}

func (s *floorStore) putZstd(d digest.Digest, z []byte) {
	s.mu.Lock()
	s.zstd[d] = z
	s.mu.Unlock()
}

type floorCapabilities struct {
	repb.UnimplementedCapabilitiesServer
}

func (floorCapabilities) GetCapabilities(context.Context, *repb.GetCapabilitiesRequest) (*repb.ServerCapabilities, error) {
	return &repb.ServerCapabilities{
		CacheCapabilities: &repb.CacheCapabilities{
			DigestFunctions:               []repb.DigestFunction_Value{repb.DigestFunction_SHA256},
			ActionCacheUpdateCapabilities: &repb.ActionCacheUpdateCapabilities{UpdateEnabled: true},
			MaxBatchTotalSizeBytes:        floorMaxBatchBytes,
			SupportedCompressors:          []repb.Compressor_Value{repb.Compressor_ZSTD},
		},
		LowApiVersion:  &semver.SemVer{Major: 2},
		HighApiVersion: &semver.SemVer{Major: 2, Minor: 3},
	}, nil
}

type floorCAS struct {
	repb.UnimplementedContentAddressableStorageServer
	s *floorStore
}

func (c floorCAS) FindMissingBlobs(ctx context.Context, req *repb.FindMissingBlobsRequest) (*repb.FindMissingBlobsResponse, error) {
	resp := &repb.FindMissingBlobsResponse{}
	c.s.mu.RLock()
	defer c.s.mu.RUnlock()
	for _, p := range req.GetBlobDigests() {
		d, err := digest.FromProto(p)
		if err != nil {
			return nil, grpcstatus.Error(codes.InvalidArgument, err.Error())
		}
		_, ok := c.s.blobs[d]
		if !ok {
			_, ok = c.s.zstd[d]
		}
		if c.s.corrupt {
			ok = !ok
		}
		if !ok && !d.IsEmpty() {
			resp.MissingBlobDigests = append(resp.MissingBlobDigests, p)
		}
	}
	return resp, nil
}

func (c floorCAS) BatchUpdateBlobs(ctx context.Context, req *repb.BatchUpdateBlobsRequest) (*repb.BatchUpdateBlobsResponse, error) {
	resp := &repb.BatchUpdateBlobsResponse{}
	for _, r := range req.GetRequests() {
		d, err := digest.FromProto(r.GetDigest())
		if err != nil {
			return nil, grpcstatus.Error(codes.InvalidArgument, err.Error())
		}
		c.s.put(d, r.GetData())
		resp.Responses = append(resp.Responses, &repb.BatchUpdateBlobsResponse_Response{
			Digest: r.GetDigest(), Status: &status.Status{},
		})
	}
	return resp, nil
}

func (c floorCAS) BatchReadBlobs(ctx context.Context, req *repb.BatchReadBlobsRequest) (*repb.BatchReadBlobsResponse, error) {
	resp := &repb.BatchReadBlobsResponse{}
	for _, p := range req.GetDigests() {
		d, err := digest.FromProto(p)
		if err != nil {
			return nil, grpcstatus.Error(codes.InvalidArgument, err.Error())
		}
		r := &repb.BatchReadBlobsResponse_Response{Digest: p, Status: &status.Status{}}
		if b, ok := c.s.plain(d); ok {
			r.Data = b
		} else {
			r.Status.Code = int32(codes.NotFound)
		}
		resp.Responses = append(resp.Responses, r)
	}
	return resp, nil
}

type floorActionCache struct {
	repb.UnimplementedActionCacheServer
	s *floorStore
}

func (a floorActionCache) GetActionResult(ctx context.Context, req *repb.GetActionResultRequest) (*repb.ActionResult, error) {
	d, err := digest.FromProto(req.GetActionDigest())
	if err != nil {
		return nil, grpcstatus.Error(codes.InvalidArgument, err.Error())
	}
	a.s.mu.RLock()
	r, ok := a.s.actions[d]
	a.s.mu.RUnlock()
	if !ok {
		return nil, grpcstatus.Errorf(codes.NotFound, "action %v not found", d)
	}
	if a.s.corrupt {
		r = proto.Clone(r).(*repb.ActionResult)
		r.ExitCode++
	}
	return r, nil
}

func (a floorActionCache) UpdateActionResult(ctx context.Context, req *repb.UpdateActionResultRequest) (*repb.ActionResult, error) {
	d, err := digest.FromProto(req.GetActionDigest())
	if err != nil {
		return nil, grpcstatus.Error(codes.InvalidArgument, err.Error())
	}
	a.s.mu.Lock()
	a.s.actions[d] = req.GetActionResult()
	a.s.mu.Unlock()
	return req.GetActionResult(), nil
}
