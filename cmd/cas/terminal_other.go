//go:build !linux

package main

import (
	"io"
	"os"
)

// isTerminal reports whether w is a character device, which is what a
// terminal is (and, less usefully, /dev/null).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
