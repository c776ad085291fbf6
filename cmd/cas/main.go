package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mound-build/mound/cas/remote"
)

const usage = `usage: cas [--server HOST:PORT] [--instance NAME] COMMAND ARGS...

Commands:
  upload PATH...
        Store files and directories. Prints "hash/size  PATH" for a file and,
        for a directory uploaded as a REAPI tree, the digest of its root
        Directory: "hash/size  PATH/". Only blobs the server lacks are sent.
  download DIGEST -o PATH [--tree] [--executable]
        Write the blob DIGEST to the file PATH (replaced atomically; mode 0644,
        or 0755 with --executable). With --tree, DIGEST is a root Directory:
        the whole tree is written under PATH, which must be absent or an
        empty directory. Everything is verified against its digest.
  stat DIGEST...
        Print "hash/size  present  SIZE" or "hash/size  missing" for each.
  missing DIGEST...
        Print the digests the server lacks, one per line.

A digest is written hash/size: the SHA-256 in lowercase hex, a slash, the
size in bytes. --server defaults to $MOUND_SERVER, then 127.0.0.1:8980; a
grpc:// prefix is accepted. Global flags may also follow the command.
Transfers show progress on stderr when it is a terminal.

Exit status: 0 on success; 1 when missing finds blobs the server lacks;
2 on any error (bad usage, unreachable server, missing or corrupt blob).
`

// Exit statuses; see usage.
const (
	exitOK      = 0
	exitMissing = 1
	exitError   = 2
)

// defaultServer is used when neither --server nor $MOUND_SERVER is set:
// where make run starts mound.
const defaultServer = "127.0.0.1:8980"

// globals are the flags every command accepts.
type globals struct {
	server   string
	instance string
}

func (g *globals) register(fs *flag.FlagSet) {
	server := os.Getenv("MOUND_SERVER")
	if server == "" {
		server = defaultServer
	}
	fs.StringVar(&g.server, "server", server, "address of the REAPI server, HOST:PORT ($MOUND_SERVER)")
	fs.StringVar(&g.instance, "instance", "", "REAPI instance name")
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var g globals
	top := flag.NewFlagSet("cas", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	g.register(top)
	if err := top.Parse(args); err != nil {
		return usageError(stderr, err)
	}
	if top.NArg() == 0 {
		return usageError(stderr, errors.New("no command"))
	}
	cmd := top.Arg(0)
	// The command's flag set takes the global flags too, starting from
	// what was given before the command.
	given := g
	fs := flag.NewFlagSet("cas "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	g.register(fs)
	g = given
	var out string
	var asTree, executable bool
	if cmd == "download" {
		fs.StringVar(&out, "o", "", "where to write the blob or tree")
		fs.BoolVar(&asTree, "tree", false, "DIGEST is a root Directory: write the whole tree")
		fs.BoolVar(&executable, "executable", false, "make the downloaded file executable (0755)")
	}
	operands, err := parseInterspersed(fs, top.Args()[1:])
	if err != nil {
		return usageError(stderr, fmt.Errorf("%s: %w", cmd, err))
	}
	switch {
	case cmd != "upload" && cmd != "download" && cmd != "stat" && cmd != "missing":
		return usageError(stderr, fmt.Errorf("unknown command %q", cmd))
	case len(operands) == 0:
		return usageError(stderr, fmt.Errorf("%s: no operands", cmd))
	case cmd == "download" && (len(operands) != 1 || out == ""):
		return usageError(stderr, errors.New("download takes one DIGEST and -o PATH"))
	}

	server := strings.TrimPrefix(g.server, "grpc://")
	conn, err := grpc.NewClient(server, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(stderr, "cas: server %q: %v\n", g.server, err)
		return exitError
	}
	defer conn.Close()
	client, err := remote.New(conn, remote.Options{Instance: g.instance})
	if err != nil {
		fmt.Fprintf(stderr, "cas: %v\n", err)
		return exitError
	}
	c := &commands{client: client, server: server, stdout: stdout, stderr: stderr, progress: isTerminal(stderr)}
	switch cmd {
	case "upload":
		return c.upload(ctx, operands)
	case "download":
		return c.download(ctx, operands[0], out, asTree, executable)
	case "stat":
		return c.stat(ctx, operands)
	default:
		return c.missing(ctx, operands)
	}
}

func usageError(stderr io.Writer, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "cas: %v\n\n%s", err, usage)
	return exitError
}

// parseInterspersed parses fs's flags wherever they are among args and
// returns the other arguments; everything after "--" is an operand.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var operands []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			return append(operands, rest...), nil
		}
		if len(rest) == 0 {
			return operands, nil
		}
		operands = append(operands, rest[0])
		args = rest[1:]
	}
}
