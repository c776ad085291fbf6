// Command workerd is mound's worker daemon: it connects out to bin/mound,
// takes actions, runs each in a Linux sandbox and uploads the outputs.
//
//	workerd --server 127.0.0.1:8980 --jobs 4 --dir /var/lib/mound-worker
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/mound-build/mound/cmd/internal/flags"
	"github.com/mound-build/mound/scheduler/workerpb"
	"github.com/mound-build/mound/workerd"
	"github.com/mound-build/mound/workerd/sandbox"
)

func main() {
	// The sandbox re-executes this binary as each action's init process.
	sandbox.RunInitIfRequested()

	host, _ := os.Hostname()
	server := flag.String("server", envOr("MOUND_SERVER", "127.0.0.1:8980"), "mound's gRPC address")
	name := flag.String("name", fmt.Sprintf("%s-%d", host, os.Getpid()), "worker name, unique among connected workers")
	jobs := flag.Int("jobs", 0, "actions to run at once (0: one per CPU)")
	dir := flag.String("dir", filepath.Join(os.TempDir(), "mound-worker"), "directory for action directories and the blob cache")
	platform := flag.String("platform", "", "platform properties this worker offers, as name=value,name=value (empty: the default pool)")
	cacheSize := flags.ByteSize(10 << 30)
	flag.Var(&cacheSize, "cache-size", "bound of the local blob cache, e.g. 20GiB")
	uid := flag.Int("uid", 65534, "unprivileged host uid actions run as")
	gid := flag.Int("gid", 65534, "unprivileged host gid actions run as")
	inputsFlag := flag.String("inputs", "auto", "how actions see their inputs: fuse (lazily, through FUSE), hardlink (all hardlinked before the action) or auto (fuse where a sandbox can mount it)")
	passthrough := flag.Bool("fuse-passthrough", true, "let the kernel read FUSE inputs straight from the local cache where it can (Linux 6.9+, root)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	inputs, err := workerd.ParseInputMode(*inputsFlag)
	if err != nil {
		log.Error("bad --inputs", "err", err)
		os.Exit(2)
	}
	props, err := parsePlatform(*platform)
	if err != nil {
		log.Error("bad --platform", "err", err)
		os.Exit(2)
	}
	conn, err := grpc.NewClient(strings.TrimPrefix(*server, "grpc://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Notice a dead scheduler within half a minute even when idle.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 15 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
	)
	if err != nil {
		log.Error("connect", "server", *server, "err", err)
		os.Exit(1)
	}
	defer conn.Close()
	w, err := workerd.New(workerd.Options{
		Conn: conn, Name: *name, Platform: props, Jobs: *jobs, Dir: *dir,
		CacheBytes: int64(cacheSize), UID: *uid, GID: *gid, Logger: log,
		Inputs: inputs, NoPassthrough: !*passthrough,
	})
	if err != nil {
		log.Error("start worker", "err", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	fmt.Printf("workerd: %s serving %s for grpc://%s\n", *name, platformString(props), *server)
	if err := w.Run(ctx); err != nil {
		log.Error("worker failed", "err", err)
		os.Exit(1)
	}
}

func parsePlatform(s string) ([]*workerpb.Property, error) {
	var props []*workerpb.Property
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not name=value", kv)
		}
		props = append(props, &workerpb.Property{Name: k, Value: v})
	}
	return props, nil
}

func platformString(props []*workerpb.Property) string {
	if len(props) == 0 {
		return "the default platform"
	}
	var parts []string
	for _, p := range props {
		parts = append(parts, p.Name+"="+p.Value)
	}
	return "platform {" + strings.Join(parts, ", ") + "}"
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
