// Command shellproxy will run make recipe lines as remote actions (see
// package shellproxy); it is not built yet.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "shellproxy: not available yet in this version of mound")
	os.Exit(2)
}
