package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mound-build/mound/scheduler/workerpb"
)

// admin runs `mound admin ...` and returns the exit status.
func admin(args []string) int {
	fs := flag.NewFlagSet("mound admin", flag.ContinueOnError)
	server := fs.String("server", envOr("MOUND_SERVER", "127.0.0.1:8980"), "mound's gRPC address")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: mound admin [--server ADDR] workers | pause WORKER | unpause WORKER | drain WORKER")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	conn, err := grpc.NewClient(*server, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "mound admin:", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := workerpb.NewAdminClient(conn)
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	states := map[string]workerpb.WorkerState{
		"pause": workerpb.WorkerState_PAUSED, "unpause": workerpb.WorkerState_ACTIVE, "drain": workerpb.WorkerState_DRAINING,
	}
	switch {
	case cmd == "workers" && len(rest) == 0:
		resp, err := client.ListWorkers(ctx, &workerpb.ListWorkersRequest{})
		if err != nil {
			fmt.Fprintf(os.Stderr, "mound admin: list workers on %s: %v\n", *server, err)
			return 1
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSTATE\tJOBS\tRUNNING\tDONE\tPLATFORM\tLAST SEEN")
		for _, w := range resp.Workers {
			var props []string
			for _, p := range w.Platform {
				props = append(props, p.Name+"="+p.Value)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t{%s}\t%s ago\n", w.Name, w.State, w.Jobs, len(w.Running), w.TasksDone,
				strings.Join(props, ","), time.Since(w.LastSeen.AsTime()).Round(time.Second))
		}
		tw.Flush()
		// Then what each one runs, a line per action.
		for _, w := range resp.Workers {
			for _, id := range w.Running {
				fmt.Printf("%s  runs %s\n", w.Name, id)
			}
		}
		return 0
	case states[cmd] != workerpb.WorkerState_WORKER_STATE_UNSPECIFIED && len(rest) == 1:
		info, err := client.SetWorkerState(ctx, &workerpb.SetWorkerStateRequest{Name: rest[0], State: states[cmd]})
		if err != nil {
			fmt.Fprintf(os.Stderr, "mound admin: %s %s: %v\n", cmd, rest[0], err)
			return 1
		}
		fmt.Printf("%s: %s (%d running)\n", info.Name, info.State, len(info.Running))
		return 0
	}
	fs.Usage()
	return 2
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
