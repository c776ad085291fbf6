package sandbox

import (
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// initError is a failure of the init, with the stage it belongs to.
type initError struct {
	stage string
	err   error
}

func (e *initError) Error() string { return e.err.Error() }

func setupErr(format string, a ...any) error {
	return &initError{stageSetup, fmt.Errorf(format, a...)}
}

func startErr(format string, a ...any) error {
	return &initError{stageStart, fmt.Errorf(format, a...)}
}

func runInitIfRequested() {
	if len(os.Args) != 1 || os.Args[0] != initArgv0 || os.Getenv(initEnv) != initEnvValue {
		return
	}
	// Never unlocked: this thread's capabilities are changed for the
	// command, which is forked from it, and a locked goroutine's thread
	// dies with it instead of returning to the scheduler.
	runtime.LockOSThread()
	report := os.NewFile(reportFD, "report")
	rep, err := initMain()
	if err != nil {
		var ie *initError
		if !errors.As(err, &ie) {
			ie = &initError{stageSetup, err}
		}
		msg := ie.Error()
		if len(msg) > maxReportSize/2 {
			msg = msg[:maxReportSize/2] + "..."
		}
		rep = initReport{Stage: ie.stage, Error: msg}
	}
	b, _ := json.Marshal(rep)
	report.Write(b)
	code := rep.ExitCode
	if err != nil {
		code = 127
	}
	os.Exit(code)
}

// initMain sets the sandbox up, runs the command and waits for it.
func initMain() (initReport, error) {
	// Only stdio reaches the command: not the init's pipes, nor any
	// descriptor the worker leaked without close-on-exec.
	if err := unix.CloseRange(reportFD, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return initReport{}, setupErr("close_range: %w", err)
	}
	var cfg initConfig
	// Run keeps the pipe open after the config, and so does the init
	// (parentAlive polls it); config must stay referenced, or a finalizer
	// would close it.
	config := os.NewFile(configFD, "config")
	if err := gob.NewDecoder(config).Decode(&cfg); err != nil {
		return initReport{}, setupErr("read config: %w", err)
	}

	if err := buildRoot(&cfg); err != nil {
		return initReport{}, err
	}
	// Changing the file system ids (buildRoot) resets the parent-death
	// signal and dumpability; set both again.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return initReport{}, setupErr("prctl(PR_SET_PDEATHSIG): %w", err)
	}
	if !parentAlive(config) {
		os.Exit(127) // nobody left to report to
	}
	// Nothing in the sandbox may ptrace the init or read its memory.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return initReport{}, setupErr("prctl(PR_SET_DUMPABLE): %w", err)
	}
	if err := unix.Sethostname([]byte(Hostname)); err != nil {
		return initReport{}, setupErr("sethostname: %w", err)
	}
	if !cfg.Network {
		if err := loopbackUp(); err != nil {
			return initReport{}, setupErr("bring up loopback: %w", err)
		}
	}
	if err := setLimits(cfg.Limits); err != nil {
		return initReport{}, err
	}
	if err := dropPrivilegesForChild(); err != nil {
		return initReport{}, err
	}
	if cfg.Probe {
		return initReport{}, nil
	}
	return runCommand(&cfg)
}

// parentAlive reports whether the process that ran Run still exists. The
// init cannot ask for its parent (it lies outside the init's pid namespace),
// but Run holds the config pipe's write end open until the init has exited,
// so a hang-up on that pipe means Run's process is gone. This closes the
// window in which a dying worker would not have killed the init because its
// parent-death signal was reset.
func parentAlive(config *os.File) bool {
	defer runtime.KeepAlive(config)
	fds := []unix.PollFd{{Fd: configFD}} // POLLHUP is always reported
	for {
		_, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		return err != nil || fds[0].Revents&unix.POLLHUP == 0
	}
}

// setLimits sets the resource limits the command inherits. It uses
// syscall.Setrlimit, which also tells the Go runtime not to restore its
// original RLIMIT_NOFILE in the child.
func setLimits(l Limits) error {
	set := func(name string, res int, v uint64) error {
		var cur syscall.Rlimit
		if err := syscall.Getrlimit(res, &cur); err != nil {
			return setupErr("getrlimit(%s): %w", name, err)
		}
		// Raising the hard limit would need privilege on the host.
		v = min(v, cur.Max)
		if err := syscall.Setrlimit(res, &syscall.Rlimit{Cur: v, Max: v}); err != nil {
			return setupErr("setrlimit(%s, %d): %w", name, v, err)
		}
		return nil
	}
	if err := set("RLIMIT_NOFILE", unix.RLIMIT_NOFILE, l.OpenFiles); err != nil {
		return err
	}
	if err := set("RLIMIT_NPROC", unix.RLIMIT_NPROC, l.Processes); err != nil {
		return err
	}
	if err := set("RLIMIT_FSIZE", unix.RLIMIT_FSIZE, l.FileSize); err != nil {
		return err
	}
	return set("RLIMIT_CORE", unix.RLIMIT_CORE, 0)
}

// dropPrivilegesForChild prepares the current thread, from which the command
// is forked, so that the command inherits no keys and can never gain
// capabilities: no ambient
// or inheritable capabilities, an empty bounding set, and no_new_privs (set-uid
// binaries and file capabilities grant nothing). The thread keeps its
// effective capabilities, which the forked child needs to switch to
// InsideUID; the command's exec as a non-root uid then clears them.
// Capabilities and these flags are per thread, hence runtime.LockOSThread.
func dropPrivilegesForChild() error {
	// A new, anonymous session keyring: the worker's (if it has one, from
	// PAM say) would otherwise be possessed by the command, which could
	// then read its keys or leave keys in it for later actions. A NULL
	// name, hence the raw call: a named keyring would be shared.
	if _, _, errno := unix.Syscall(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0); errno != 0 {
		return setupErr("join a new session keyring: %w", errno)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return setupErr("clear ambient capabilities: %w", err)
	}
	// The inheritable set holds what the init kept across its own exec;
	// nothing may be inheritable by the command.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3} // Pid 0: this thread
	var caps [2]unix.CapUserData
	if err := unix.Capget(&hdr, &caps[0]); err != nil {
		return setupErr("capget: %w", err)
	}
	caps[0].Inheritable, caps[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &caps[0]); err != nil {
		return setupErr("capset: %w", err)
	}
	for c := 0; ; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if err == unix.EINVAL { // past the last capability the kernel knows
			break
		}
		if err != nil {
			return setupErr("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return setupErr("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	return nil
}

// runCommand starts the command, reaps every process that ends up as the
// init's child, and returns when the command has exited.
func runCommand(cfg *initConfig) (initReport, error) {
	if fi, err := os.Stat(cfg.WorkDir); err != nil {
		return initReport{}, startErr("working directory: %w", err)
	} else if !fi.IsDir() {
		return initReport{}, startErr("working directory %s is not a directory", cfg.WorkDir)
	}
	attr := &syscall.ProcAttr{
		Dir:   cfg.WorkDir,
		Env:   cfg.Env,
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			// An empty Groups clears the supplementary groups.
			Credential: &syscall.Credential{Uid: InsideUID, Gid: InsideGID, Groups: []uint32{}},
		},
	}
	start := time.Now()
	pid, err := startCommand(cfg, attr)
	if err != nil {
		return initReport{}, err
	}
	for {
		var ws syscall.WaitStatus
		var ru syscall.Rusage
		wpid, err := syscall.Wait4(-1, &ws, 0, &ru)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return initReport{}, setupErr("wait for the command: %w", err)
		}
		if wpid != pid {
			continue // an orphan the command left behind
		}
		rep := initReport{
			ExitCode:   ws.ExitStatus(),
			WallTime:   time.Since(start),
			UserTime:   time.Duration(ru.Utime.Nano()),
			SystemTime: time.Duration(ru.Stime.Nano()),
			MaxRSS:     ru.Maxrss * 1024,
		}
		if ws.Signaled() {
			rep.Signal = int(ws.Signal())
			rep.ExitCode = 128 + rep.Signal
		}
		return rep, nil
	}
}

// startCommand starts Args[0], searching the PATH of the command's
// environment when it has no slash, as execvp does: a candidate that cannot
// be executed (missing, or not permitted to the command's user) is skipped.
func startCommand(cfg *initConfig, attr *syscall.ProcAttr) (int, error) {
	name := cfg.Args[0]
	if strings.Contains(name, "/") {
		pid, _, err := syscall.StartProcess(name, cfg.Args, attr)
		if err != nil {
			return 0, startErr("start %s in %s: %w", name, cfg.WorkDir, err)
		}
		return pid, nil
	}
	search := defaultPath
	for _, e := range cfg.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			search = v // the first one, as getenv(3) finds it
			break
		}
	}
	var firstErr error
	for _, dir := range strings.Split(search, ":") {
		if dir == "" {
			dir = "."
		}
		cand := path.Join(dir, name)
		if !path.IsAbs(cand) && !strings.HasPrefix(cand, "./") {
			cand = "./" + cand // relative to the working directory, never searched again
		}
		// Skip what is certainly not a program without forking.
		onDisk := cand
		if !path.IsAbs(cand) {
			onDisk = path.Join(cfg.WorkDir, cand)
		}
		if fi, err := os.Stat(onDisk); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			continue
		}
		pid, _, err := syscall.StartProcess(cand, cfg.Args, attr)
		if err == nil {
			return pid, nil
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", cand, err)
		}
		if err != syscall.EACCES && err != syscall.ENOENT && err != syscall.ENOTDIR {
			break
		}
	}
	if firstErr != nil {
		return 0, startErr("start %s: %w", name, firstErr)
	}
	return 0, startErr("%s not found in PATH %q", name, search)
}
