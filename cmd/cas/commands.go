package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/mound-build/mound/cas"
	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/remote"
	"github.com/mound-build/mound/cas/tree"
)

// commands run the cas commands against one server.
type commands struct {
	client   *remote.Client
	server   string
	stdout   io.Writer
	stderr   io.Writer
	progress bool // show progress bars on stderr
}

// store is the client, with a progress bar around it when stderr is a
// terminal. Call done on the returned bar when the transfer ends.
func (c *commands) store(label string) (*progressStore, *bar) {
	b := newBar(c.stderr, label, c.progress)
	return &progressStore{client: c.client, bar: b}, b
}

// fail reports err about what and returns the error exit status.
func (c *commands) fail(what string, err error) int {
	fmt.Fprintf(c.stderr, "cas: %s: %v\n", what, err)
	return exitError
}

// failBlob is fail for an operation on the blob d, which is reported
// briefly when it is d itself that the server lacks.
func (c *commands) failBlob(what string, d digest.Digest, err error) int {
	var missing *cas.MissingError
	if errors.As(err, &missing) && missing.Digest == d {
		err = fmt.Errorf("not found on %s", c.server)
	}
	return c.fail(what, err)
}

func (c *commands) upload(ctx context.Context, paths []string) int {
	code := exitOK
	for _, path := range paths {
		info, err := os.Stat(path)
		if err != nil {
			code = c.fail("upload "+path, err)
			continue
		}
		s, b := c.store("upload " + path)
		if info.IsDir() {
			stats, err := tree.Upload(ctx, s, path)
			b.done()
			if err != nil {
				code = c.fail("upload "+path, err)
				continue
			}
			fmt.Fprintf(c.stdout, "%v  %s/\n", stats.Root, strings.TrimSuffix(path, "/"))
			continue
		}
		d, err := tree.UploadFile(ctx, s, path)
		b.done()
		if err != nil {
			code = c.fail("upload "+path, err)
			continue
		}
		fmt.Fprintf(c.stdout, "%v  %s\n", d, path)
	}
	return code
}

func (c *commands) download(ctx context.Context, arg, out string, asTree, executable bool) int {
	what := "download " + arg
	d, err := digest.Parse(arg)
	if err != nil {
		return c.fail("download", err)
	}
	s, b := c.store("download " + out)
	defer b.done()
	if !asTree {
		mode := fs.FileMode(0o644)
		if executable {
			mode = 0o755
		}
		b.setTotal(d.Size)
		if err := tree.DownloadFile(ctx, s, d, out, mode); err != nil {
			return c.failBlob(what, d, err)
		}
		return exitOK
	}
	t, err := tree.Fetch(ctx, s, d)
	if err != nil {
		return c.failBlob(what, d, err)
	}
	b.restart(t.FetchBytes)
	if err := t.Write(ctx, s, out); err != nil {
		return c.failBlob(what, d, err)
	}
	return exitOK
}

// parseDigests parses operands, reporting the first bad one.
func (c *commands) parseDigests(cmd string, args []string) ([]digest.Digest, bool) {
	ds := make([]digest.Digest, len(args))
	for i, a := range args {
		d, err := digest.Parse(a)
		if err != nil {
			fmt.Fprintf(c.stderr, "cas: %s: %v\n", cmd, err)
			return nil, false
		}
		ds[i] = d
	}
	return ds, true
}

func (c *commands) stat(ctx context.Context, args []string) int {
	ds, ok := c.parseDigests("stat", args)
	if !ok {
		return exitError
	}
	missing, err := c.client.FindMissing(ctx, ds)
	if err != nil {
		return c.fail("stat", err)
	}
	absent := map[digest.Digest]bool{}
	for _, d := range missing {
		absent[d] = true
	}
	for _, d := range ds {
		if absent[d] {
			fmt.Fprintf(c.stdout, "%v  missing\n", d)
		} else {
			fmt.Fprintf(c.stdout, "%v  present  %s\n", d, humanBytes(d.Size))
		}
	}
	return exitOK
}

func (c *commands) missing(ctx context.Context, args []string) int {
	ds, ok := c.parseDigests("missing", args)
	if !ok {
		return exitError
	}
	missing, err := c.client.FindMissing(ctx, ds)
	if err != nil {
		return c.fail("missing", err)
	}
	for _, d := range missing {
		fmt.Fprintln(c.stdout, d)
	}
	if len(missing) > 0 {
		return exitMissing
	}
	return exitOK
}
