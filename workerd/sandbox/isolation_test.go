//go:build linux

package sandbox

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestExecRootPermissions(t *testing.T) {
	t.Parallel()
	root := newExecRoot(t)
	writeFile(t, root, "input.txt", "hello\n", 0o444)
	if err := os.Mkdir(filepath.Join(root, "ro"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(root, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(out, testUID, testGID); err != nil {
		t.Fatal(err)
	}
	o := mustRun(t, Spec{ExecRoot: root, Args: bash(`
		cat input.txt
		touch ro/x 2>/dev/null && echo ro dir writable
		touch x 2>/dev/null && echo exec root writable
		(echo >> input.txt) 2>/dev/null && echo input writable
		echo made > out/made
	`)})
	if o.stdout != "hello\n" {
		t.Errorf("stdout %q, want only the input's content", o.stdout)
	}
	made := filepath.Join(out, "made")
	if got := readFile(t, made); got != "made\n" {
		t.Errorf("out/made = %q", got)
	}
	fi, err := os.Stat(made)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != testUID || st.Gid != testGID {
		t.Errorf("out/made owned by %d:%d on the host, want %d:%d", st.Uid, st.Gid, testUID, testGID)
	}
}

func TestPrivateTmp(t *testing.T) {
	t.Parallel()
	host, err := os.CreateTemp("", "host-file-")
	if err != nil {
		t.Fatal(err)
	}
	host.Close()
	t.Cleanup(func() { os.Remove(host.Name()) })
	// Twice: what the first run leaves in /tmp must not reach the second.
	for range 2 {
		o := mustRun(t, Spec{Args: bash(`
			ls -A /tmp /dev/shm
			touch /tmp/x /dev/shm/y && echo writable
		`)})
		if want := "/dev/shm:\n\n/tmp:\nwritable\n"; o.stdout != want {
			t.Errorf("stdout %q, want %q", o.stdout, want)
		}
	}
}

func TestHostIsHidden(t *testing.T) {
	t.Parallel()
	secret := t.TempDir()
	writeFile(t, secret, "secret", "s", 0o644)
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	hidden := []string{secret, filepath.Join(secret, "secret"), cwd, exe,
		"/root", "/home", "/srv", "/var", "/run", "/opt", "/mnt", "/media", "/boot", "/sys", "/work"}
	o := runSpec(t, context.Background(), Spec{Args: append([]string{"/bin/ls", "-d"}, hidden...)})
	if o.err != nil || o.stdout != "" || strings.Count(o.stderr, "No such file or directory") != len(hidden) {
		t.Errorf("host paths visible in the sandbox: %+v, %v\nstdout:\n%s\nstderr:\n%s", o.res, o.err, o.stdout, o.stderr)
	}

	want := []string{"dev", "execroot", "proc", "tmp"}
	for _, d := range systemDirs {
		if _, err := os.Lstat(d); err == nil {
			want = append(want, d[1:])
		}
	}
	sort.Strings(want)
	o = mustRun(t, Spec{Args: []string{"/bin/ls", "-A", "/"}})
	if got := strings.Fields(o.stdout); !slices.Equal(got, want) {
		t.Errorf("ls / = %q, want %q", got, want)
	}

	o = runSpec(t, context.Background(), Spec{Args: []string{"/bin/cat", "/etc/shadow"}})
	if o.err != nil || o.res.ExitCode == 0 || o.stdout != "" || !strings.Contains(o.stderr, "Permission denied") {
		t.Errorf("cat /etc/shadow: %+v, %v, stdout %q, stderr %q; want permission denied", o.res, o.err, o.stdout, o.stderr)
	}
}

func TestNoPrivileges(t *testing.T) {
	t.Parallel()
	o := mustRun(t, Spec{Args: bash(`
		id -u; id -g; id -G
		grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status
		mount -t tmpfs none /tmp 2>/dev/null && echo mounted tmpfs
		mount --bind /usr /tmp 2>/dev/null && echo bind mounted
		ls /proc/1/root/ >/dev/null 2>&1 && echo read init root
		cat /proc/1/environ >/dev/null 2>&1 && echo read init environ
		hostname evil >/dev/null 2>&1
		cat /proc/sys/kernel/hostname
		ls /proc | grep -E '^[0-9]+$' | sort -n | head -1
		exit 0
	`)})
	want := fmt.Sprintf(`%d
%d
%d
CapInh:	0000000000000000
CapPrm:	0000000000000000
CapEff:	0000000000000000
CapBnd:	0000000000000000
CapAmb:	0000000000000000
NoNewPrivs:	1
%s
1
`, InsideUID, InsideGID, InsideGID, Hostname)
	if o.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", o.stdout, want)
	}
}

// TestSessionKeyringIsNew gives the thread that starts the sandbox a
// session keyring, as PAM gives a worker's, and checks that the command
// does not get it.
func TestSessionKeyringIsNew(t *testing.T) {
	t.Parallel()
	// Session keyrings belong to threads; Run starts the init from the
	// thread of its caller's goroutine, and this one dies with it.
	runtime.LockOSThread()
	name, err := unix.BytePtrFromString("mound-sandbox-test-session")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, uintptr(unsafe.Pointer(name)), 0); errno != 0 {
		t.Fatalf("join a session keyring: %v", errno)
	}
	// Perl, for its syscall(): describe the session keyring (KEYCTL_DESCRIBE
	// of KEY_SPEC_SESSION_KEYRING) as "type;uid;gid;perm;name".
	script := fmt.Sprintf(`my $buf = "\0" x 256; syscall(%d, 6, -3, $buf, 256) >= 0 or die "keyctl: $!"; $buf =~ s/\0.*//s; print "$buf\n";`, unix.SYS_KEYCTL)
	o := mustRun(t, Spec{Args: []string{"/usr/bin/perl", "-e", script}})
	desc := strings.TrimSpace(o.stdout)
	if strings.Contains(desc, "mound-sandbox-test-session") || !strings.HasPrefix(desc, "keyring;") {
		t.Errorf("the command's session keyring is %q, want a new one", desc)
	}
}

// listen opens a TCP listener on the host's loopback that accepts and
// closes connections, reporting each on the returned channel.
func listen(t *testing.T) (port int, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).Port, ch
}

func TestNetwork(t *testing.T) {
	t.Parallel()
	port, accepted := listen(t)
	connect := fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d", port)

	o := runSpec(t, context.Background(), Spec{Args: bash(connect)})
	if o.err != nil || o.res.ExitCode == 0 || !strings.Contains(o.stderr, "Connection refused") {
		t.Errorf("without network, connecting to the host's listener: %+v, %v, stderr %q; want connection refused", o.res, o.err, o.stderr)
	}
	o = runSpec(t, context.Background(), Spec{Args: bash("exec 3<>/dev/tcp/192.0.2.1/80")})
	if o.err != nil || o.res.ExitCode == 0 || !strings.Contains(o.stderr, "unreachable") {
		t.Errorf("without network, connecting out: %+v, %v, stderr %q; want network unreachable", o.res, o.err, o.stderr)
	}

	mustRun(t, Spec{Network: true, Args: bash(connect)})
	select {
	case <-accepted:
	case <-time.After(runBound):
		t.Errorf("with network, the host's listener saw no connection")
	}
}

func TestLoopbackInside(t *testing.T) {
	t.Parallel()
	const script = `
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
c = socket.create_connection(s.getsockname(), timeout=30)
a, _ = s.accept()
c.sendall(b"ping")
print(a.recv(4).decode())
`
	o := mustRun(t, Spec{Args: []string{"/usr/bin/python3", "-c", script}})
	if o.stdout != "ping\n" {
		t.Errorf("stdout %q, want ping", o.stdout)
	}
}

func TestDescriptorsDoNotLeak(t *testing.T) {
	t.Parallel()
	// A descriptor the worker opened without close-on-exec.
	fd, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	o := mustRun(t, Spec{Args: []string{"/bin/ls", "/proc/self/fd"}})
	// 3 is ls's own handle on the directory.
	if o.stdout != "0\n1\n2\n3\n" {
		t.Errorf("descriptors open in the command:\n%s", o.stdout)
	}
}
