package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the server: with MOUND_TEST_MAIN=1 it runs
// main, so tests can start, kill and restart real server processes.
func TestMain(m *testing.M) {
	if os.Getenv("MOUND_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var addrLine = regexp.MustCompile(`grpc://(\S+)`)

// serverProcess is a mound started by a test.
type serverProcess struct {
	cmd  *exec.Cmd
	addr string
	done chan error
}

// startServer runs mound on data and waits until it announces its address.
func startServer(t *testing.T, data string, args ...string) *serverProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--listen", "127.0.0.1:0", "--http", "", "--data", data}, args...)...)
	cmd.Env = append(os.Environ(), "MOUND_TEST_MAIN=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serverProcess{cmd: cmd, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := addrLine.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, out)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() { p.kill(syscall.SIGKILL) })
	select {
	case p.addr = <-addr:
		return p
	case err := <-p.done:
		t.Fatalf("mound exited before serving: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("mound did not announce its address within 30s")
	}
	return nil
}

// kill signals the server and waits for it to exit.
func (p *serverProcess) kill(sig syscall.Signal) error {
	if p.cmd.ProcessState != nil {
		return nil
	}
	p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		return context.DeadlineExceeded
	}
}
