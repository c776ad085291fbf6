// Command mound is the mound server: REAPI CAS, ByteStream, ActionCache and
// Capabilities on one gRPC port, Prometheus metrics on an HTTP port, with its
// data in a local directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/mound-build/mound/cas/badgerstore"
	"github.com/mound-build/mound/cmd/internal/flags"
	"github.com/mound-build/mound/execution"
	"github.com/mound-build/mound/scheduler"
	"github.com/mound-build/mound/server"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "admin" {
		os.Exit(admin(os.Args[2:]))
	}
	listen := flag.String("listen", "127.0.0.1:8980", "gRPC address (REAPI)")
	httpAddr := flag.String("http", "127.0.0.1:8981", "HTTP address (metrics); empty to disable")
	data := flag.String("data", ".mound", "data directory")
	maxSize := flags.ByteSize(0)
	flag.Var(&maxSize, "max-size", "largest size of stored blobs, e.g. 10GiB (0: unbounded); least recently used blobs are evicted")
	var exec execution.Options
	flag.DurationVar(&exec.DefaultTimeout, "default-timeout", 0, "timeout of actions that ask for none (0: 15m, or --max-timeout when shorter)")
	flag.DurationVar(&exec.MaxTimeout, "max-timeout", 3*time.Hour, "longest timeout an action may ask for")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: mound [flags]\n       mound admin [--server ADDR] workers|pause|unpause|drain [WORKER]\n\nflags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	tuneGC()
	if err := run(log, *listen, *httpAddr, *data, int64(maxSize), exec); err != nil {
		log.Error("mound failed", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, listen, httpAddr, data string, maxSize int64, exec execution.Options) error {
	// Before anything is announced, so that a signal sent as soon as the
	// address is printed still stops the server cleanly.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	store, err := badgerstore.Open(badgerstore.Options{Dir: data, MaxSize: maxSize, Logger: log})
	if err != nil {
		return err
	}
	defer store.Close()
	sched := scheduler.New(scheduler.Options{Logger: log})
	defer sched.Close()
	srv, err := server.New(server.Options{Blobs: store, Actions: store, Scheduler: sched, Execution: exec, Logger: log})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.ServeGRPC(lis) }()
	fmt.Printf("mound: serving REAPI on grpc://%s (data in %s)\n", lis.Addr(), data)
	var hs *http.Server
	if httpAddr != "" {
		hl, err := net.Listen("tcp", httpAddr)
		if err != nil {
			return err
		}
		hs = &http.Server{Handler: srv.HTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- hs.Serve(hl) }()
		fmt.Printf("mound: metrics on http://%s/metrics\n", hl.Addr())
	}
	fmt.Printf("mound: use it from Bazel with --remote_cache=grpc://%s (cache only)\n", lis.Addr())
	fmt.Printf("mound:   or --remote_executor=grpc://%s (remote execution; start workers with: bin/workerd --server %s)\n", lis.Addr(), lis.Addr())

	select {
	case s := <-sig:
		log.Info("stopping", "signal", s.String())
	case err := <-errc:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if hs != nil {
		hs.Shutdown(ctx)
	}
	srv.Stop(ctx)
	return nil
}

// tuneGC trades memory for CPU unless GOGC or GOMEMLIMIT say otherwise. The
// server's live heap is small next to the bytes it streams, so Go's default
// (a collection each time the heap doubles) collects every few MiB of
// upload; measured with make bench, GOGC=400 lifts 64 MiB uploads at 4 in
// flight from 40% to 67% of the floor. A soft limit of half the machine's
// memory keeps a large index from growing the heap without bound.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		var info syscall.Sysinfo_t
		if syscall.Sysinfo(&info) == nil {
			debug.SetMemoryLimit(int64(info.Totalram) * int64(info.Unit) / 2)
		}
	}
}
