// Command workerd will be mound's worker daemon (see package workerd); remote
// execution is not built yet.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "workerd: remote execution is not available yet in this version of mound")
	os.Exit(2)
}
