package blobcache

import (
	"context"
	"errors"
	"testing"

	"github.com/mound-build/mound/cas/digest"
	"github.com/mound-build/mound/cas/memstore"
)

func TestInsertAndLookup(t *testing.T) {
	remote := memstore.New() // empty: nothing may be fetched
	c := open(t, t.TempDir(), 1<<20, remote)
	data := []byte("fetched by a FUSE read\n")
	d := digest.OfBytes(data)
	if c.Has(d, false) {
		t.Fatal("Has a blob never stored")
	}
	if err := c.Insert(d, true, []byte("other bytes")); !errors.Is(err, digest.ErrMismatch) {
		t.Fatalf("Insert of wrong bytes: %v, want a mismatch", err)
	}
	if c.Has(d, true) {
		t.Fatal("wrong bytes were stored")
	}
	if err := c.Insert(d, true, data); err != nil {
		t.Fatal(err)
	}
	if !c.Has(d, true) || c.Has(d, false) {
		t.Fatal("Has after Insert: only the executable variant was stored")
	}
	if err := c.Insert(d, true, data); err != nil { // present: nothing to do
		t.Fatal(err)
	}
	// Path finds it without asking the (empty) remote.
	p, err := c.Path(context.Background(), d, true)
	if err != nil {
		t.Fatalf("Path after Insert: %v", err)
	}
	checkFile(t, p, data, execMode)
}
