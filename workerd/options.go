package workerd

import (
	"errors"
	"log/slog"
	"runtime"

	"google.golang.org/grpc"

	"github.com/mound-build/mound/scheduler/workerpb"
)

// Version is reported to the scheduler in Hello.
const Version = "mound-workerd/0.1"

// Options configure a Worker. Conn, Name and Dir are required.
type Options struct {
	// Conn reaches mound: its Scheduler service and its CAS.
	Conn *grpc.ClientConn
	// Name identifies the worker; it must be unique among connected
	// workers and stable across reconnects of one process.
	Name string
	// Platform is what the worker offers; it serves actions whose platform
	// is exactly this. Empty: the default pool.
	Platform []*workerpb.Property
	// Jobs is how many actions run at once; 0 means runtime.NumCPU().
	Jobs int
	// Dir holds the worker's action directories and blob cache.
	Dir string
	// CacheBytes bounds the local blob cache; 0 means 10 GiB.
	CacheBytes int64
	// UID and GID are the unprivileged host ids actions run as; 0 means
	// 65534 (nobody).
	UID, GID int
	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger
}

func (o *Options) validate() error {
	if o.Conn == nil || o.Name == "" || o.Dir == "" {
		return errors.New("workerd: Options.Conn, Name and Dir are required")
	}
	if o.Jobs == 0 {
		o.Jobs = runtime.NumCPU()
	}
	if o.Jobs < 0 {
		return errors.New("workerd: Jobs must be positive")
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 10 << 30
	}
	if o.UID == 0 {
		o.UID = 65534
	}
	if o.GID == 0 {
		o.GID = 65534
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}
