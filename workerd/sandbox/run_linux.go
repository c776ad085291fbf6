package sandbox

import (
	"bytes"
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The init is recognised by both its argv[0] and an environment variable;
// the command's environment is built from Spec.Env alone, so neither reaches
// it.
const (
	initArgv0    = "mound-sandbox-init"
	initEnv      = "MOUND_SANDBOX_INIT"
	initEnvValue = "1"
)

// File descriptors of the init's pipes (0-2 are the command's stdio; 5 is
// fuseSockFD).
const (
	reportFD = 3 // init → Run: the initReport
	configFD = 4 // Run → init: the initConfig
)

// initCaps are the capabilities the init keeps across its exec, inside its
// user namespace only: the exec would otherwise drop them all, since the
// init's uid is not root there. The command gets none of them.
var initCaps = []uintptr{
	unix.CAP_SYS_ADMIN, // mount, pivot_root, sethostname
	unix.CAP_NET_ADMIN, // bring loopback up
	unix.CAP_SETUID,    // run the command as InsideUID
	unix.CAP_SETGID,    // ... with InsideGID and no supplementary groups
	unix.CAP_SETPCAP,   // empty the command's bounding set
}

// probeTimeout bounds Available's trial sandbox; setting one up takes a few
// milliseconds, so only a hung init (e.g. a binary that does not call
// RunInitIfRequested) reaches it.
const probeTimeout = 10 * time.Second

func run(ctx context.Context, spec *Spec, cfg initConfig) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{TimedOut: true}, fmt.Errorf("sandbox: %w", err)
	}
	// gob, not JSON: arguments and paths are bytes, not necessarily UTF-8.
	var payload bytes.Buffer
	if err := gob.NewEncoder(&payload).Encode(cfg); err != nil {
		return Result{}, fmt.Errorf("sandbox: encode config: %w", err)
	}
	reportR, reportW, err := os.Pipe()
	if err != nil {
		return Result{}, fmt.Errorf("sandbox: report pipe: %w", err)
	}
	defer reportR.Close()
	configR, configW, err := os.Pipe()
	if err != nil {
		reportW.Close()
		return Result{}, fmt.Errorf("sandbox: config pipe: %w", err)
	}
	initFiles := []*os.File{reportW, configR} // fds 3 and 4
	var fuseSock *os.File                     // Run's end of the FUSE handshake
	if spec.FUSE != nil {
		var initSock *os.File
		fuseSock, initSock, err = fuseSocketPair()
		if err != nil {
			reportW.Close()
			configR.Close()
			configW.Close()
			return Result{}, fmt.Errorf("sandbox: FUSE handshake: %w", err)
		}
		initFiles = append(initFiles, initSock) // fd 5, fuseSockFD
	}

	flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID |
		unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP)
	if !cfg.Network {
		flags |= unix.CLONE_NEWNET
	}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: []string{initArgv0},
		// The init needs few threads and no pause at exit (race-enabled
		// builds sleep a second there by default).
		Env:        []string{initEnv + "=" + initEnvValue, "GOMAXPROCS=1", "GORACE=atexit_sleep_ms=0"},
		ExtraFiles: initFiles,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  flags,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: InsideUID, HostID: spec.UID, Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: InsideGID, HostID: spec.GID, Size: 1}},
			// The init clears the command's supplementary groups (the
			// worker's, otherwise), which needs setgroups allowed.
			GidMappingsEnableSetgroups: true,
			AmbientCaps:                initCaps,
			Pdeathsig:                  syscall.SIGKILL,
			Setsid:                     true, // no controlling terminal
		},
	}
	// A nil *os.File in an io.Writer would not read as nil to os/exec.
	if spec.Stdout != nil {
		cmd.Stdout = spec.Stdout
	}
	if spec.Stderr != nil {
		cmd.Stderr = spec.Stderr
	}

	// Pdeathsig fires when the thread that forked the init exits, not the
	// process: keep this goroutine on its thread until the init is gone.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	err = cmd.Start()
	for _, f := range initFiles {
		f.Close()
	}
	if err != nil {
		configW.Close()
		if fuseSock != nil {
			fuseSock.Close()
		}
		return Result{}, fmt.Errorf("sandbox: start init: %w", err)
	}
	start := time.Now()
	var fuse *fuseHandshake
	var fuseDone <-chan error // fuse.done until read
	if fuseSock != nil {
		fuse = startFUSEHandshake(fuseSock, spec.FUSE)
		defer fuse.close()
		fuseDone = fuse.done
	}

	// Written from a goroutine: a config larger than the pipe's buffer
	// would block until the init reads it, and Run must still honour ctx.
	// The init reads it first thing; if the init dies, the write fails.
	// The write end stays open until the init has exited: the init takes
	// a hang-up on it to mean that this process died.
	configDone := make(chan struct{})
	go func() {
		defer close(configDone)
		configW.Write(payload.Bytes())
	}()
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()

	var timeout <-chan time.Time
	if spec.Timeout > 0 {
		t := time.NewTimer(spec.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var killed bool
	var ctxErr error
	var waitErr error
	var fuseErr error // why serving the exec root failed, if it did
wait:
	for {
		select {
		case err := <-fuseDone:
			fuseDone = nil
			if err != nil && !errors.Is(err, errInitGone) {
				// No command can run without its exec root.
				fuseErr = err
				cmd.Process.Kill()
			}
		case waitErr = <-waitDone:
			break wait
		case <-timeout:
			killed = true
			break wait
		case <-ctx.Done():
			killed, ctxErr = true, ctx.Err()
			break wait
		}
	}
	if killed {
		// SIGKILL to the init ends its pid namespace: the kernel kills
		// every process in it before the init's wait returns.
		cmd.Process.Kill()
		waitErr = <-waitDone
	}
	wall := time.Since(start)
	<-configDone
	configW.Close()
	if fuseDone != nil {
		// The init is gone, and its mount with it: the handshake ends
		// at once, whatever stage it was at.
		if err := <-fuseDone; err != nil && !errors.Is(err, errInitGone) {
			fuseErr = err
		}
	}

	rep, repErr := readReport(reportR)
	if killed {
		res := Result{TimedOut: true, ExitCode: 128 + int(unix.SIGKILL), Signal: "SIGKILL", WallTime: wall}
		usageFromState(&res, cmd.ProcessState)
		if ctxErr != nil {
			return res, fmt.Errorf("sandbox: %w", ctxErr)
		}
		return res, nil
	}
	switch {
	case repErr != nil && fuseErr != nil:
		return Result{}, fmt.Errorf("sandbox: %w", fuseErr)
	case repErr != nil:
		return Result{}, fmt.Errorf("sandbox: init ended (%v) without a valid report: %w", waitErr, repErr)
	case rep.Stage == stageStart:
		return Result{}, fmt.Errorf("%w: %s", ErrStart, rep.Error)
	case rep.Stage != "" || rep.Error != "":
		return Result{}, fmt.Errorf("sandbox setup: %s", rep.Error)
	}
	res := Result{
		ExitCode:   rep.ExitCode,
		WallTime:   rep.WallTime,
		UserTime:   rep.UserTime,
		SystemTime: rep.SystemTime,
		MaxRSS:     rep.MaxRSS,
	}
	if rep.Signal != 0 {
		res.Signal = unix.SignalName(syscall.Signal(rep.Signal))
		if res.Signal == "" {
			res.Signal = fmt.Sprintf("signal %d", rep.Signal)
		}
	}
	return res, nil
}

// readReport reads the init's report. The init has exited, so the pipe is
// at EOF after what it wrote.
func readReport(r io.Reader) (initReport, error) {
	var rep initReport
	b, err := io.ReadAll(io.LimitReader(r, maxReportSize+1))
	if err != nil {
		return rep, fmt.Errorf("read report: %w", err)
	}
	if len(b) == 0 {
		return rep, errors.New("empty report")
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return rep, fmt.Errorf("decode report: %w", err)
	}
	return rep, nil
}

// usageFromState fills res's CPU times and peak RSS from the init's own
// usage, which includes the processes it reaped: what is known of a sandbox
// that was killed before the init could report.
func usageFromState(res *Result, ps *os.ProcessState) {
	if ps == nil {
		return
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		res.UserTime = time.Duration(ru.Utime.Nano())
		res.SystemTime = time.Duration(ru.Stime.Nano())
		res.MaxRSS = ru.Maxrss * 1024
	}
}

func available() error {
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && string(b) == "0\n" {
		return errors.New("sandbox: user namespaces are disabled (sysctl user.max_user_namespaces = 0)")
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("sandbox: mapping the sandbox's user to an arbitrary host uid needs root (euid is %d)", os.Geteuid())
	}
	dir, err := os.MkdirTemp("", "mound-sandbox-probe-")
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer os.Remove(dir)
	return probe(Spec{ExecRoot: dir, Args: []string{"true"}, UID: 65534, GID: 65534})
}

func availableFUSE() error {
	if err := available(); err != nil {
		return err
	}
	// The init stops before anything looks inside the mount, so it needs
	// no server: the mount dies unanswered with the sandbox.
	notServed := func(*os.File) error { return nil }
	if err := probe(Spec{FUSE: notServed, Args: []string{"true"}, UID: 65534, GID: 65534}); err != nil {
		return fmt.Errorf("sandbox: FUSE exec roots: %w", err)
	}
	return nil
}

// probe sets up a sandbox for spec without running its command.
func probe(spec Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	cfg := spec.initConfig()
	cfg.Probe = true
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if _, err := run(ctx, &spec, cfg); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("sandbox: the init did not answer within %v (does main call sandbox.RunInitIfRequested first?)", probeTimeout)
		}
		return err
	}
	return nil
}
