package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/memstore"
	"github.com/mound-build/mound/cas/storetest"
	"github.com/mound-build/mound/server"
)

// commandTimeout bounds each run of the binary; buildTimeout the go build.
const (
	commandTimeout = 60 * time.Second
	buildTimeout   = 5 * time.Minute
)

// buildCas compiles the command into a temporary directory.
func buildCas(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "cas")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startServer serves a memstore over gRPC on a TCP port of 127.0.0.1 until
// the test ends.
func startServer(t *testing.T) (string, *memstore.Store) {
	t.Helper()
	mem := memstore.New()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	storetest.Serve(t, server.Options{Blobs: mem, Actions: mem}, lis)
	return lis.Addr().String(), mem
}

// result is what a run of the binary printed and its exit status.
type result struct {
	stdout, stderr string
	code           int
}

// runCas runs the binary with $MOUND_SERVER set to server.
func runCas(t *testing.T, bin, server string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "MOUND_SERVER="+server)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("cas %v: %v", args, err)
	}
	return result{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

// expect fails t unless r has the exit status code and stdout, and stderr
// contains errText (empty stderr when errText is "").
func expect(t *testing.T, what string, r result, code int, stdout, errText string) {
	t.Helper()
	if r.code != code || r.stdout != stdout || (errText == "" && r.stderr != "") || !strings.Contains(r.stderr, errText) {
		t.Errorf("%s: exit %d, stdout %q, stderr %q\nwant exit %d, stdout %q, stderr with %q", what, r.code, r.stdout, r.stderr, code, stdout, errText)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// makeTree writes nested directories, an executable, an empty file, a
// symlink and a file larger than a batch into dir.
func makeTree(t *testing.T, dir string) {
	t.Helper()
	files := map[string][]byte{
		"a.txt":          []byte("alpha\n"),
		"sub/b.txt":      []byte("beta\n"),
		"sub/deeper/c.c": []byte("int c;\n"),
		"sub/empty":      nil,
		"big.bin":        randomBytes(t, 5<<20),
		"run.sh":         []byte("#!/bin/sh\necho hi\n"),
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := fs.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("sub/b.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "nothing"), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestCLI(t *testing.T) {
	bin := buildCas(t)
	addr, _ := startServer(t)
	work := t.TempDir()

	// A file.
	file := filepath.Join(work, "file.txt")
	content := []byte("hello, cas\n")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	fileDigest := digest.OfBytes(content)
	expect(t, "upload file", runCas(t, bin, addr, "upload", file), 0, fmt.Sprintf("%v  %s\n", fileDigest, file), "")

	// A tree, twice: the second time nothing is missing and the root is
	// the same.
	src := filepath.Join(work, "src")
	makeTree(t, src)
	up := runCas(t, bin, addr, "upload", src+"/")
	expect(t, "upload tree", up, 0, up.stdout, "")
	root, path, ok := strings.Cut(strings.TrimSuffix(up.stdout, "\n"), "  ")
	if !ok || path != src+"/" {
		t.Fatalf("upload tree printed %q, want \"hash/size  %s/\"", up.stdout, src)
	}
	if _, err := digest.Parse(root); err != nil {
		t.Fatalf("upload tree printed %q: %v", up.stdout, err)
	}
	expect(t, "second upload", runCas(t, bin, addr, "--server", addr, "upload", src), 0, up.stdout, "")

	// Download the tree and the file.
	dst := filepath.Join(work, "dst")
	expect(t, "download tree", runCas(t, bin, addr, "download", root, "-o", dst, "--tree"), 0, "", "")
	storetest.CompareTrees(t, src, dst)
	expect(t, "download into a non-empty directory", runCas(t, bin, addr, "download", root, "--tree", "-o", dst), 2, "", "not empty")
	out := filepath.Join(work, "out.txt")
	expect(t, "download file", runCas(t, bin, addr, "download", fileDigest.String(), "-o", out, "--executable"), 0, "", "")
	if b, err := os.ReadFile(out); err != nil || !bytes.Equal(b, content) {
		t.Errorf("downloaded file: %q, %v", b, err)
	}
	if info, err := os.Stat(out); err != nil || info.Mode().Perm() != 0o755 {
		t.Errorf("downloaded file with --executable: %v, %v", info.Mode(), err)
	}

	// stat and missing.
	absent := digest.OfBytes([]byte("never uploaded"))
	expect(t, "stat", runCas(t, bin, addr, "stat", fileDigest.String(), absent.String()), 0,
		fmt.Sprintf("%v  present  11 B\n%v  missing\n", fileDigest, absent), "")
	expect(t, "missing, none", runCas(t, bin, addr, "missing", fileDigest.String(), root), 0, "", "")
	expect(t, "missing, one", runCas(t, bin, addr, "missing", fileDigest.String(), absent.String()), 1, absent.String()+"\n", "")

	// Errors.
	expect(t, "download absent", runCas(t, bin, addr, "download", absent.String(), "-o", filepath.Join(work, "x")), 2, "",
		fmt.Sprintf("cas: download %v: not found on %s\n", absent, addr))
	if _, err := os.Stat(filepath.Join(work, "x")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed download left %s: %v", filepath.Join(work, "x"), err)
	}
	expect(t, "download absent tree", runCas(t, bin, addr, "download", absent.String(), "--tree", "-o", filepath.Join(work, "y")), 2, "", "not found on "+addr)
	expect(t, "bad digest", runCas(t, bin, addr, "stat", "e3b0/12"), 2, "", "invalid digest")
	expect(t, "no command", runCas(t, bin, addr), 2, "", "usage: cas")
	expect(t, "unknown command", runCas(t, bin, addr, "frobnicate", "x"), 2, "", `unknown command "frobnicate"`)
	expect(t, "download without -o", runCas(t, bin, addr, "download", root), 2, "", "-o PATH")
	expect(t, "upload of nothing", runCas(t, bin, addr, "upload", filepath.Join(work, "nope")), 2, "", "no such file")

	// An unreachable server, named by $MOUND_SERVER or --server.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	expect(t, "unreachable server", runCas(t, bin, dead, "stat", fileDigest.String()), 2, "", "server "+dead+" is unavailable")
	expect(t, "--server wins over $MOUND_SERVER", runCas(t, bin, dead, "--server", "grpc://"+addr, "stat", fileDigest.String()), 0,
		fmt.Sprintf("%v  present  11 B\n", fileDigest), "")
	expect(t, "global flag after the command", runCas(t, bin, dead, "stat", fileDigest.String(), "--server", addr), 0,
		fmt.Sprintf("%v  present  11 B\n", fileDigest), "")
}
