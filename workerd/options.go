package workerd

import (
	"errors"
	"fmt"
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
	// Inputs is how actions see their input trees: InputsFUSE (lazily,
	// through a FUSE file system), InputsHardlink (every file hardlinked
	// from the local cache before the action starts) or InputsAuto, the
	// zero value: FUSE when this machine can mount it in a sandbox,
	// hardlinks otherwise.
	Inputs InputMode
	// NoPassthrough turns FUSE passthrough off: the kernel then reads
	// every input through the worker instead of from the cache's files.
	// For measurements; the zero value uses it where the kernel allows.
	NoPassthrough bool
	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger
}

// InputMode is how a worker presents input trees (Options.Inputs).
type InputMode string

// Input modes.
const (
	InputsAuto     InputMode = ""
	InputsFUSE     InputMode = "fuse"
	InputsHardlink InputMode = "hardlink"
)

// ParseInputMode parses the --inputs flag: fuse, hardlink or auto.
func ParseInputMode(s string) (InputMode, error) {
	switch s {
	case "auto", "":
		return InputsAuto, nil
	case "fuse":
		return InputsFUSE, nil
	case "hardlink":
		return InputsHardlink, nil
	}
	return "", fmt.Errorf("input mode %q is not fuse, hardlink or auto", s)
}

func (o *Options) validate() error {
	if o.Conn == nil || o.Name == "" || o.Dir == "" {
		return errors.New("workerd: Options.Conn, Name and Dir are required")
	}
	if o.Jobs == 0 {
		o.Jobs = runtime.NumCPU()
	}
	if _, err := ParseInputMode(string(o.Inputs)); err != nil {
		return fmt.Errorf("workerd: Options.Inputs: %w", err)
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
