package service

import (
	"errors"

	"github.com/mound-build/mound/cas"
)

// Options wire the services to storage. Blobs and Actions are required.
type Options struct {
	// Blobs is the content-addressed store.
	Blobs cas.BlobStore
	// Actions is the action cache; wrap it in cas.CompleteActionCache so
	// that results with evicted outputs are misses.
	Actions cas.ActionCache
	// MaxBatchBytes bounds the content of one BatchUpdateBlobs or
	// BatchReadBlobs request, and of inlined AC outputs. 0 means
	// DefaultMaxBatchBytes.
	MaxBatchBytes int64
	// ExecutionEnabled makes Capabilities announce remote execution.
	ExecutionEnabled bool
	// Metrics records hits, misses and bytes; nil records nothing.
	Metrics *Metrics
	// Chunks, when set, is the codec the gRPC server decodes requests
	// with (grpc.ForceServerCodecV2): ByteStream then gives the buffers
	// of received write chunks back to it once their bytes are stored.
	// Leave it nil when requests are decoded otherwise.
	Chunks *ChunkCodec
}

// DefaultMaxBatchBytes stays below gRPC's default 4 MiB receive limit of
// clients with room for message overhead; the server itself accepts larger
// messages (MaxRecvMsgBytes).
const DefaultMaxBatchBytes = 4<<20 - 256<<10

// MaxRecvMsgBytes is the gRPC receive limit the server should be built with.
const MaxRecvMsgBytes = 8 << 20

// Validate reports whether o is usable.
func (o Options) Validate() error {
	if o.Blobs == nil || o.Actions == nil {
		return errors.New("service: Options.Blobs and Options.Actions are required")
	}
	if o.MaxBatchBytes < 0 || o.MaxBatchBytes > MaxRecvMsgBytes-64<<10 {
		return errors.New("service: MaxBatchBytes must fit in a gRPC message")
	}
	return nil
}

func (o *Options) setDefaults() {
	if o.MaxBatchBytes == 0 {
		o.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
}
