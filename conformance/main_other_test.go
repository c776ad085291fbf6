//go:build !linux

package conformance

import "os/exec"

// dieWithParent does nothing where the kernel offers no parent-death
// signal: there, a test binary that dies early leaves the server running.
func dieWithParent(cmd *exec.Cmd) {}
