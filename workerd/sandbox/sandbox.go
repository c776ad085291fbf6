package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// InsideUID and InsideGID are the user and group the command runs as inside
// the sandbox; the user namespace maps them (and nothing else) to the host's
// Spec.UID and Spec.GID. They are fixed and differ from the kernel's overflow
// id 65534, which is how the command sees files owned by unmapped host users
// such as root: it can tell its own files from everyone else's.
const (
	InsideUID = 1000
	InsideGID = 1000
)

// DefaultMountPath is where the command sees the exec root when
// Spec.MountPath is empty.
const DefaultMountPath = "/execroot"

// Hostname is the sandbox's host name. /etc/hosts resolves it to loopback,
// so tools that look up their own host name work without a network.
const Hostname = "localhost"

// defaultPath is the search path for Args[0] when Spec.Env has no PATH
// (the REAPI leaves that case to the implementation); it is what execvp
// uses.
const defaultPath = "/bin:/usr/bin"

var (
	// ErrInvalidSpec means Spec.Validate rejected the spec: the command
	// (or the worker's translation of it) is at fault, not the machine.
	ErrInvalidSpec = errors.New("invalid sandbox spec")
	// ErrStart means the sandbox was set up but the command could not be
	// started: Args[0] was not found or is not executable, or the working
	// directory does not exist. Like ErrInvalidSpec it is the action's
	// fault; any other error from Run means the sandbox itself failed.
	ErrStart = errors.New("command could not be started")
)

// systemDirs are the host directories every sandbox sees, read-only; those
// missing on the host are left out. A symlink (merged-usr systems link /bin
// to usr/bin) is recreated as the same symlink. Everything else of the host
// (/home, /root, /var, /run, /srv, /opt, the worker's own directories) is
// not in the sandbox at all.
var systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc"}

// privateDirs are the sandbox's own mounts beside systemDirs and MountPath.
var privateDirs = []string{"/proc", "/dev", "/tmp"}

// Spec describes one command to run. Run does not modify it or the files it
// refers to, except through what the command itself does.
type Spec struct {
	// ExecRoot is the host directory with the action's input tree. The
	// command sees it read-write at MountPath; host permissions decide
	// what it may change (it runs as UID/GID). It must be "" when FUSE is
	// set.
	ExecRoot string
	// FUSE, when set, makes the exec root a FUSE file system that this
	// process serves, instead of a bind mount of ExecRoot. The sandbox's
	// init opens /dev/fuse inside the sandbox's namespaces and mounts it
	// at MountPath, with allow_other and default_permissions: the kernel
	// checks the modes and owners the server reports. Only the
	// sandbox's processes can reach the mount; it exists in the sandbox's
	// mount namespace alone, never on the host, and ends with the sandbox
	// however that ends, even if this process is killed.
	//
	// Ids are the sandbox's on both sides: requests carry InsideUID and
	// InsideGID as the caller's ids (and pids of the sandbox's pid
	// namespace), and the kernel reads the owners the server reports as
	// ids of the sandbox's user namespace, where only InsideUID and
	// InsideGID exist. It refuses every write to an inode owned by any
	// other id, whatever the server would answer: what the command may
	// change (output directories, the files it creates) must be reported
	// as owned by InsideUID and InsideGID.
	//
	// Run calls FUSE once the file system is mounted, from another
	// goroutine, with the init's /dev/fuse; the kernel's INIT request is
	// waiting in it. FUSE must start serving dev and return (with go-fuse:
	// fuse.NewServer with the mount point "/dev/fd/N", then go Serve),
	// without waiting for requests other than INIT: the command starts
	// only after FUSE returned nil, and an error fails Run. dev belongs to
	// Run, which closes it after the sandbox has ended; a server that
	// closes its descriptor itself, as go-fuse does with N, must be given
	// a duplicate (fcntl F_DUPFD_CLOEXEC). When the sandbox ends, its
	// mount goes with it and the server's reads fail with ENODEV, which
	// ends a go-fuse Server; Run does not wait for the server.
	FUSE func(dev *os.File) error
	// MountPath is the absolute path where the command sees the exec
	// root; "" means DefaultMountPath. It must not be "/" nor lie under
	// the sandbox's system or private directories (/usr, /etc, /tmp, ...).
	MountPath string
	// WorkDir is Command.working_directory, relative to the exec root (""
	// for the root itself). It must be a local path (no "..", not
	// absolute); a missing directory makes Run fail with ErrStart.
	WorkDir string
	// Args is Command.arguments. Args[0] without a slash is searched in
	// the PATH of Env (or "/bin:/usr/bin" when Env has none), as seen
	// inside the sandbox; with a slash but relative, it is relative to the
	// working directory.
	Args []string
	// Env is the command's whole environment, "NAME=value" entries;
	// nothing is inherited from the worker.
	Env []string
	// Network keeps the host's network namespace. When false the command
	// gets a new network namespace with only loopback, brought up. With
	// the host's namespace comes everything bound in it, including
	// abstract unix sockets of host daemons.
	Network bool
	// Timeout bounds the command's run time; 0 means no timeout (ctx still
	// applies).
	Timeout time.Duration
	// Stdout and Stderr receive the command's output; nil means discard.
	// They are handed to the command as they are, so output written before
	// a timeout stays in them. The caller owns and closes them.
	Stdout, Stderr *os.File
	// UID and GID are the host ids the command runs as: unprivileged ids,
	// never 0. Concurrent sandboxes may share them; each has its own
	// namespaces, and RLIMIT_NPROC counts per sandbox.
	UID, GID int
	// Limits are the command's resource limits; zero fields take defaults.
	Limits Limits
}

// Limits are resource limits (setrlimit) for the command and everything it
// starts. A zero field means its default; no limit is raised above the
// worker's own hard limit. RLIMIT_CORE is always 0: a crashing action must
// not write core files into its outputs nor feed the host's core handler.
type Limits struct {
	// OpenFiles is RLIMIT_NOFILE; default 65536.
	OpenFiles uint64
	// Processes is RLIMIT_NPROC: processes and threads of the command's
	// user in this sandbox (the count is per user namespace); default 16384.
	Processes uint64
	// FileSize is RLIMIT_FSIZE, the largest file the command may write, in
	// bytes; default 64 GiB, a guard against runaway output rather than a
	// quota.
	FileSize uint64
}

const (
	defaultOpenFiles = 65536
	defaultProcesses = 16384
	defaultFileSize  = 64 << 30
)

// withDefaults returns l with zero fields replaced by their defaults.
func (l Limits) withDefaults() Limits {
	if l.OpenFiles == 0 {
		l.OpenFiles = defaultOpenFiles
	}
	if l.Processes == 0 {
		l.Processes = defaultProcesses
	}
	if l.FileSize == 0 {
		l.FileSize = defaultFileSize
	}
	return l
}

// Result is what became of a command that was started.
type Result struct {
	// ExitCode is the command's exit status, or 128 plus the signal
	// number when a signal killed it (as a shell reports it).
	ExitCode int
	// Signal names the signal that killed the command ("SIGSEGV"), or is
	// "" when it exited. A timed-out command reports "SIGKILL".
	Signal string
	// TimedOut is set when Spec.Timeout or the context ended the run.
	TimedOut bool
	// WallTime is how long the command ran.
	WallTime time.Duration
	// UserTime and SystemTime are the CPU time of the command and the
	// descendants it waited for.
	UserTime, SystemTime time.Duration
	// MaxRSS is the peak resident set size, in bytes, of the command or of
	// the largest descendant it waited for.
	MaxRSS int64
}

// Validate reports whether s can be run, with an error wrapping
// ErrInvalidSpec when it cannot. Run calls it first.
func (s *Spec) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, a...))
	}
	switch {
	case s.FUSE != nil && s.ExecRoot != "":
		return bad("exec root %q given with FUSE, which serves the exec root", s.ExecRoot)
	case s.FUSE != nil:
		// No exec root on the host to check.
	case !filepath.IsAbs(s.ExecRoot) || filepath.Clean(s.ExecRoot) == "/":
		return bad("exec root %q is not an absolute path below /", s.ExecRoot)
	default:
		if fi, err := os.Stat(s.ExecRoot); err != nil {
			return bad("exec root: %v", err)
		} else if !fi.IsDir() {
			return bad("exec root %q is not a directory", s.ExecRoot)
		}
	}
	mp := s.mountPath()
	if !path.IsAbs(mp) || path.Clean(mp) != mp || mp == "/" {
		return bad("mount path %q is not a clean absolute path below /", mp)
	}
	for _, r := range slices.Concat(systemDirs, privateDirs) {
		if mp == r || strings.HasPrefix(mp, r+"/") {
			return bad("mount path %q lies in the sandbox's %s", mp, r)
		}
	}
	if s.WorkDir != "" && !filepath.IsLocal(s.WorkDir) {
		return bad("working directory %q escapes the exec root", s.WorkDir)
	}
	if len(s.Args) == 0 || s.Args[0] == "" {
		return bad("no command")
	}
	for _, a := range s.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return bad("argument %q contains a NUL byte", a)
		}
	}
	for _, e := range s.Env {
		if strings.IndexByte(e, 0) >= 0 || !strings.Contains(e, "=") || strings.HasPrefix(e, "=") {
			return bad("environment entry %q is not NAME=value", e)
		}
	}
	for _, p := range []string{s.ExecRoot, mp, s.WorkDir} {
		if strings.IndexByte(p, 0) >= 0 {
			return bad("path %q contains a NUL byte", p)
		}
	}
	if s.UID <= 0 || s.GID <= 0 || s.UID >= 1<<32-1 || s.GID >= 1<<32-1 {
		return bad("uid %d / gid %d: the command must run as an unprivileged host user", s.UID, s.GID)
	}
	if s.Timeout < 0 {
		return bad("negative timeout %v", s.Timeout)
	}
	return nil
}

func (s *Spec) mountPath() string {
	if s.MountPath == "" {
		return DefaultMountPath
	}
	return s.MountPath
}

// initConfig is what Run sends the init over its spec pipe: the Spec without
// the host-side parts (files, ids, timeout), defaults filled in.
type initConfig struct {
	ExecRoot string
	// FUSE makes the init mount /dev/fuse at MountPath, instead of
	// binding ExecRoot there, and hand the device to Run.
	FUSE      bool
	MountPath string
	WorkDir   string // absolute, inside the sandbox
	Args      []string
	Env       []string
	Network   bool
	Limits    Limits
	// Probe makes the init stop after setting everything up, without
	// starting a command (Available).
	Probe bool
}

func (s *Spec) initConfig() initConfig {
	mp := s.mountPath()
	return initConfig{
		ExecRoot:  s.ExecRoot,
		FUSE:      s.FUSE != nil,
		MountPath: mp,
		WorkDir:   path.Join(mp, filepath.ToSlash(s.WorkDir)),
		Args:      s.Args,
		Env:       s.Env,
		Network:   s.Network,
		Limits:    s.Limits.withDefaults(),
	}
}

// Stages of an init failure, in its report.
const (
	stageSetup = "setup" // building the sandbox failed: the machine's fault
	stageStart = "start" // the command could not be started: ErrStart
)

// initReport is the one message the init writes to its report pipe before
// exiting: either a failure (Stage and Error) or how the command ended.
type initReport struct {
	Stage string `json:",omitempty"`
	Error string `json:",omitempty"`

	ExitCode   int
	Signal     int // signal number that killed the command, 0 if it exited
	WallTime   time.Duration
	UserTime   time.Duration
	SystemTime time.Duration
	MaxRSS     int64 // bytes
}

// maxReportSize bounds the init's report; the init truncates error text to
// stay below it, and it is far below a pipe's capacity, so the init never
// blocks writing it.
const maxReportSize = 8 << 10

// Run runs spec's command in a new sandbox and waits for it and everything
// it started to end. A command that runs and fails is a Result with its exit
// status, not an error. The error is non-nil when spec is invalid
// (ErrInvalidSpec), when the command could not be started (ErrStart), when
// the sandbox could not be set up (namespaces unavailable, a mount failed:
// anything else), or when ctx ended first: then Run kills the sandbox and
// returns the partial Result (TimedOut set) together with ctx's error, so
// that a cancelled action is never mistaken for a finished one. When Run
// returns, no process of the sandbox is left.
//
// Run is safe to call concurrently. The binary must call
// RunInitIfRequested first thing in main (tests: in TestMain).
func Run(ctx context.Context, spec Spec) (Result, error) {
	if err := spec.Validate(); err != nil {
		return Result{}, err
	}
	return run(ctx, &spec, spec.initConfig())
}

// Available reports nil when this machine can run sandboxes, and otherwise
// why not (user namespaces disabled, not root, /proc cannot be mounted, ...).
// It sets a sandbox up for real, without running a command, so it takes a
// few milliseconds; call it once when the worker starts.
func Available() error {
	return available()
}

// AvailableFUSE reports nil when this machine can also run sandboxes whose
// exec root is a FUSE file system (Spec.FUSE), and otherwise why not (no
// /dev/fuse, a kernel that refuses FUSE mounts in user namespaces, ...).
// Like Available it sets a sandbox up for real, here with a FUSE mount that
// nothing touches and that is never served.
func AvailableFUSE() error {
	return availableFUSE()
}

// RunInitIfRequested must be called first thing in the main of any binary
// that calls Run, and in TestMain of tests that do: Run starts the running
// binary again as the sandbox's init, and this is where that copy becomes
// the init. In that case RunInitIfRequested never returns; otherwise it
// returns at once.
func RunInitIfRequested() {
	runInitIfRequested()
}
