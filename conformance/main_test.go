package conformance

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

var (
	targetFlag    = flag.String("target", "", "`address` (host:port or grpc://host:port) of the REAPI server to test; empty starts mound")
	instanceFlag  = flag.String("instance", "", "REAPI instance `name` used by every test")
	moundFlag     = flag.String("mound", "", "`path` of a built mound binary to start when -target is empty; empty builds ./cmd/mound")
	workerdFlag   = flag.String("workerd", "", "`path` of a built workerd binary to start beside the suite's mound for the execution cases; empty builds ./cmd/workerd")
	inputsFlag    = flag.String("workerd-inputs", "auto", "`mode` of the suite's workerd's inputs: --inputs fuse, hardlink or auto")
	instanceAFlag = flag.String("instance-a", "conformance-a", "first instance `name` of the action-cache isolation test")
	instanceBFlag = flag.String("instance-b", "conformance-b", "second instance `name` of the action-cache isolation test")
)

const (
	// buildTimeout bounds `go build ./cmd/mound` (or ./cmd/workerd); a
	// cold module cache compiles a few hundred packages.
	buildTimeout = 5 * time.Minute
	// startTimeout bounds how long mound may take to print its address.
	startTimeout = 30 * time.Second
	// stopTimeout is how long mound gets to exit after SIGTERM before it is
	// killed.
	stopTimeout = 10 * time.Second
	// connectTimeout bounds the wait for the connection to become ready.
	connectTimeout = 10 * time.Second
	// maxRecvBytes is the client's gRPC receive limit. It is larger than
	// the 4 MiB that Bazel uses so that an oversized ReadResponse reaches
	// the test, which reports its size, instead of failing in gRPC.
	maxRecvBytes = 64 << 20
)

// suite is the server connection every test shares. It is set up on first
// use (connect), inside m.Run: then a run that selects no test starts no
// server, and go test's result cache sees the files the set-up looks at.
var suite struct {
	once sync.Once
	conn *grpc.ClientConn
	srv  *process // nil with -target
	err  error

	// The execution set-up (execSetup) runs on the first execution case
	// only, so that storage-only runs start no worker.
	execOnce sync.Once
	worker   *process // nil with -target
	exec     bool     // the target executes actions
	execErr  error
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if suite.conn != nil {
		suite.conn.Close()
	}
	// The worker first: a worker whose server went away first only logs
	// reconnection attempts.
	for _, p := range []*process{suite.worker, suite.srv} {
		if p == nil {
			continue
		}
		if code != 0 {
			fmt.Fprintf(os.Stderr, "conformance: output of %s:\n%s", p.bin, p.output())
		}
		p.stop()
	}
	os.Exit(code)
}

// connect returns the shared connection, starting mound first when no
// -target is given. A failed set-up fails every test that needs it.
func connect(t testing.TB) *grpc.ClientConn {
	t.Helper()
	suite.once.Do(func() {
		addr := *targetFlag
		if addr == "" {
			if suite.srv, suite.err = startMound(*moundFlag); suite.err != nil {
				return
			}
			addr = suite.srv.addr
		}
		suite.conn, suite.err = dial(addr)
	})
	if suite.err != nil {
		t.Fatalf("no server to test: %v", suite.err)
	}
	return suite.conn
}

// dial connects to addr and waits until the connection is ready, so that an
// unreachable target fails the set-up with a clear error instead of every
// RPC with a timeout.
func dial(addr string) (*grpc.ClientConn, error) {
	addr = strings.TrimPrefix(addr, "grpc://")
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvBytes)))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	conn.Connect()
	for {
		s := conn.GetState()
		switch s {
		case connectivity.Ready:
			return conn, nil
		case connectivity.TransientFailure:
			// The first attempt failed: the target is down or wrong.
			conn.Close()
			return nil, fmt.Errorf("connect to %s: connection failed (state %v)", addr, s)
		}
		if !conn.WaitForStateChange(ctx, s) {
			conn.Close()
			return nil, fmt.Errorf("connect to %s: not ready after %v (state %v)", addr, connectTimeout, s)
		}
	}
}

// process is a mound server or a workerd started by the suite. Its exec.Cmd
// owns the goroutine copying the process's output; stop waits for it.
type process struct {
	bin    string
	dir    string // temporary directory the process owns: removed by stop
	addr   string // the server's gRPC address; empty for a worker
	cmd    *exec.Cmd
	out    *serverOutput
	exited chan error // receives cmd.Wait's result once
}

// startMound starts bin, or a mound built from the module around the working
// directory when bin is empty, on free ports with a fresh data directory.
func startMound(bin string) (*process, error) {
	dir, err := os.MkdirTemp("", "mound-conformance-")
	if err != nil {
		return nil, err
	}
	p := &process{bin: bin, dir: dir, out: newServerOutput(), exited: make(chan error, 1)}
	if p.bin == "" {
		if p.bin, err = buildCommand(dir, "./cmd/mound"); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	} else {
		// Let go test's result cache notice a rebuilt binary.
		os.Stat(p.bin)
	}
	p.cmd = exec.Command(p.bin, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data", filepath.Join(dir, "data"))
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out.stderr()
	if err := p.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case p.addr = <-p.out.addr:
		return p, nil
	case err := <-p.exited:
		p.exited <- err
		p.stop()
		return nil, fmt.Errorf("%s exited before printing a grpc:// address (%v); output:\n%s", p.bin, err, p.output())
	case <-timer.C:
		p.stop()
		return nil, fmt.Errorf("%s printed no grpc:// address within %v; output:\n%s", p.bin, startTimeout, p.output())
	}
}

// start starts p.cmd, killed with the test binary, and the goroutine that
// waits for it.
func (p *process) start() error {
	// A child that inherited the output pipe must not keep Wait blocked.
	p.cmd.WaitDelay = stopTimeout
	dieWithParent(p.cmd)
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.bin, err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	return nil
}

// buildCommand builds the main package pkg (such as "./cmd/mound") of the
// enclosing module into dir and returns the binary's path.
func buildCommand(dir, pkg string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s in %s: %w\n%s", pkg, root, err, out)
	}
	statSources(root)
	return bin, nil
}

// statSources looks at every file of the module. go test caches a passing
// result until the test binary or a file the test process itself opened or
// stat'ed changes; the server's sources are read by the go build child, which
// go test does not see. Without this, a cached pass would hide a server
// change.
func statSources(root string) {
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			os.Stat(path)
		}
		return nil
	})
}

// moduleRoot returns the nearest directory at or above the working directory
// that holds a go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod at or above the working directory; use -target or -mound")
		}
		dir = parent
	}
}

// stop sends SIGTERM, kills the process if it has not exited within
// stopTimeout, waits for it and removes its directory.
func (p *process) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-timer.C:
		p.cmd.Process.Kill()
		<-p.exited
	}
	os.RemoveAll(p.dir)
}

func (p *process) output() string { return p.out.String() }

// serverOutput collects a server's stdout and stderr and sends the first
// address that follows "grpc://" on a line of stdout.
type serverOutput struct {
	addr chan string // buffered; receives one address

	mu   sync.Mutex
	all  bytes.Buffer // stdout and stderr as they came; guarded by mu
	line []byte       // stdout after its last newline; guarded by mu
	sent bool         // the address was sent; guarded by mu
}

func newServerOutput() *serverOutput { return &serverOutput{addr: make(chan string, 1)} }

// Write takes stdout. It implements io.Writer.
func (o *serverOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.all.Write(p)
	if o.sent {
		return len(p), nil
	}
	o.line = append(o.line, p...)
	for {
		i := bytes.IndexByte(o.line, '\n')
		if i < 0 {
			return len(p), nil
		}
		_, after, ok := strings.Cut(string(o.line[:i]), "grpc://")
		o.line = o.line[i+1:]
		if f := strings.Fields(after); ok && len(f) > 0 {
			o.addr <- f[0]
			o.sent, o.line = true, nil
			return len(p), nil
		}
	}
}

// stderr returns a writer that adds to the output without looking for the
// address.
func (o *serverOutput) stderr() io.Writer { return stderrWriter{o} }

type stderrWriter struct{ o *serverOutput }

func (w stderrWriter) Write(p []byte) (int, error) {
	w.o.mu.Lock()
	defer w.o.mu.Unlock()
	return w.o.all.Write(p)
}

func (o *serverOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.all.String()
}
