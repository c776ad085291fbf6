package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/scheduler"
	"github.com/mound-build/mound/scheduler/workerpb"
	moundserver "github.com/mound-build/mound/server"
	"github.com/mound-build/mound/workerd"
	"github.com/mound-build/mound/workerd/sandbox"
)

func TestMain(m *testing.M) {
	// The in-process worker's sandbox re-executes the test binary as each
	// action's init process.
	sandbox.RunInitIfRequested()
	os.Exit(m.Run())
}

// TestExecQuick runs the exec workload against an in-process mound (in
// memory) with one in-process worker, so that the workload, its checks and
// its rows run in make test.
func TestExecQuick(t *testing.T) {
	addr := startExecServer(t)
	opts := QuickOptions(addr)
	opts.Only = []string{"exec"}
	rep, err := Run(t.Context(), opts)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := []string{ExecuteNoop, GetActionResultHit, ExecuteCached}
	if len(rep.Rows) != len(want) {
		t.Fatalf("%d rows, want %v: %+v", len(rep.Rows), want, rep.Rows)
	}
	for i, r := range rep.Rows {
		if r.Workload != want[i] || r.Concurrency != 1 || r.Unit != "ms" {
			t.Errorf("row %d: %s at %d in %s, want %s at 1 in ms", i, r.Workload, r.Concurrency, r.Unit, want[i])
		}
		if r.Target.Value <= 0 || r.Target.P99 < r.Target.Value || r.Floor.Ops != 0 {
			t.Errorf("%s: target %+v, floor %+v: want a positive p50 <= p99 and no floor", r.Workload, r.Target, r.Floor)
		}
		if r.Verdict != "PASS" && r.Verdict != "MISS" {
			t.Errorf("%s: no verdict (aim %q)", r.Workload, r.Aim)
		}
	}
	if n := rep.Rows[0].Target.Ops; n != opts.ExecActions {
		t.Errorf("%s timed %d executions, want %d", ExecuteNoop, n, opts.ExecActions)
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "sandboxed run") {
		t.Errorf("notes %q, want the phases of the no-op executions", rep.Notes)
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, w := range append(want, "no floor", "(absolute)") {
		if !strings.Contains(text.String(), w) {
			t.Errorf("text report lacks %q:\n%s", w, text.String())
		}
	}
}

// startExecServer starts mound's server on a memory store with a
// scheduler, and one worker, and returns its address once the worker is
// connected. Both stop when the test ends.
func startExecServer(t *testing.T) string {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := memstore.New()
	sched := scheduler.New(scheduler.Options{Logger: quiet})
	srv, err := moundserver.New(moundserver.Options{Blobs: store, Actions: store, Scheduler: sched, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeGRPC(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	w, err := workerd.New(workerd.Options{Conn: conn, Name: "bench-worker", Jobs: 2, Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-ran
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
		<-served
		sched.Close()
		conn.Close()
	})

	// The worker announces itself to the server, not to the test: poll
	// the server's worker list, bounded.
	admin := workerpb.NewAdminClient(conn)
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := admin.ListWorkers(t.Context(), &workerpb.ListWorkersRequest{})
		if err == nil && len(resp.GetWorkers()) == 1 {
			return lis.Addr().String()
		}
		select {
		case <-deadline:
			t.Fatalf("the worker did not connect: %v %v", resp, err)
		case <-tick.C:
		}
	}
}
