package conformance

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill the server when the test binary dies
// without reaching its cleanup (go test -timeout, a crash), so that no
// server outlives the suite.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
