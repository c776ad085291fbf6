package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	bspb "google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/service"
	"github.com/mound-build/mound/execution"
	"github.com/mound-build/mound/scheduler"
	"github.com/mound-build/mound/scheduler/workerpb"
)

// Options configure a Server. Blobs and Actions are required.
type Options struct {
	// Blobs is the CAS.
	Blobs cas.BlobStore
	// Actions is the action cache as stored; the server makes results
	// whose blobs are gone into misses (cas.CompleteActionCache).
	Actions cas.ActionCache
	// Scheduler, when set, enables remote execution: the Execution service
	// queues actions on it, and workers and operators reach it through its
	// Scheduler and Admin services.
	Scheduler *scheduler.Scheduler
	// Execution tunes the Execution service; its Blobs, Actions and Queue
	// are filled in by New.
	Execution execution.Options
	// Logger receives operational messages; nil means slog.Default().
	Logger *slog.Logger
}

// Server is mound's gRPC server with its HTTP side. Create with New, run
// with ServeGRPC and HTTPHandler, end with Stop.
type Server struct {
	grpc       *grpc.Server
	bytestream *service.ByteStream
	execution  *execution.Execution // nil without a scheduler
	scheduler  *scheduler.Scheduler // nil without remote execution
	registry   *prometheus.Registry
	log        *slog.Logger
}

// New builds the server and registers every service.
func New(opts Options) (*Server, error) {
	if opts.Blobs == nil || opts.Actions == nil {
		return nil, errors.New("server: Options.Blobs and Options.Actions are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rpcs := newRPCMetrics(reg)
	if st, ok := opts.Blobs.(storeStats); ok {
		reg.MustRegister(storeCollector{st})
	}
	actions := cas.CompleteActionCache{ActionCache: opts.Actions, Blobs: opts.Blobs}
	// Write chunks are decoded into buffers that ByteStream reuses.
	codec := service.NewChunkCodec()
	svcOpts := service.Options{
		Chunks:           codec,
		Blobs:            opts.Blobs,
		Actions:          actions,
		Metrics:          service.NewMetrics(reg),
		ExecutionEnabled: opts.Scheduler != nil,
	}
	casSvc, err := service.NewCAS(svcOpts)
	if err != nil {
		return nil, err
	}
	bs, err := service.NewByteStream(svcOpts)
	if err != nil {
		return nil, err
	}
	ac, err := service.NewActionCache(svcOpts)
	if err != nil {
		return nil, err
	}
	g := grpc.NewServer(
		grpc.ForceServerCodecV2(codec),
		grpc.MaxRecvMsgSize(service.MaxRecvMsgBytes),
		grpc.ChainUnaryInterceptor(rpcs.unary),
		grpc.ChainStreamInterceptor(rpcs.stream),
		// Clients such as Bazel may ping idle connections to keep them
		// open through NATs; allow it rather than closing on them.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)
	repb.RegisterCapabilitiesServer(g, service.NewCapabilities(svcOpts))
	repb.RegisterContentAddressableStorageServer(g, casSvc)
	repb.RegisterActionCacheServer(g, ac)
	bspb.RegisterByteStreamServer(g, bs)
	srv := &Server{grpc: g, bytestream: bs, scheduler: opts.Scheduler, registry: reg, log: opts.Logger}
	if opts.Scheduler != nil {
		eo := opts.Execution
		eo.Blobs, eo.Actions, eo.Queue = opts.Blobs, actions, opts.Scheduler
		if eo.Logger == nil {
			eo.Logger = opts.Logger
		}
		if srv.execution, err = execution.New(eo); err != nil {
			return nil, err
		}
		repb.RegisterExecutionServer(g, srv.execution)
		workerpb.RegisterSchedulerServer(g, opts.Scheduler)
		workerpb.RegisterAdminServer(g, opts.Scheduler)
	}
	return srv, nil
}

// ServeGRPC serves gRPC on lis until Stop.
func (s *Server) ServeGRPC(lis net.Listener) error { return s.grpc.Serve(lis) }

// HTTPHandler serves /metrics and /debug/pprof.
func (s *Server) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	// Profiles, for operators chasing a slow server.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("mound: Prometheus metrics at /metrics\n"))
	})
	return mux
}

// Stop lets RPCs in flight finish until ctx ends, then cuts them off, and
// waits for uploads to end. Worker sessions end at once: they last as long
// as the server.
func (s *Server) Stop(ctx context.Context) {
	if s.scheduler != nil {
		s.scheduler.EndSessions()
	}
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
	s.bytestream.Close()
	if s.execution != nil {
		s.execution.Close()
	}
}
