package workerd

import (
	"slices"
	"testing"

	"github.com/mound-build/mound/cas/digest"
)

func TestReadSetsKeepRecentWithinBound(t *testing.T) {
	r := newReadSets(5)
	a, b, c := digest.OfBytes([]byte("a")), digest.OfBytes([]byte("b")), digest.OfBytes([]byte("c"))
	r.put(a, []string{"x", "y"})
	r.put(b, []string{"z"})
	if got := r.get(a); !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("get(a) = %q", got)
	}
	r.put(b, []string{"p", "q"}) // replaces b's set
	r.put(c, []string{"1", "2"}) // 6 paths: the least recent (a) goes
	if got := r.get(a); got != nil {
		t.Errorf("a's set survived past the bound: %q", got)
	}
	if got := r.get(b); !slices.Equal(got, []string{"p", "q"}) {
		t.Errorf("get(b) = %q", got)
	}
	r.put(a, []string{"1", "2", "3", "4", "5", "6"}) // larger than the bound
	if got := r.get(a); got != nil {
		t.Errorf("a set larger than the bound was kept: %q", got)
	}
	if got := r.get(c); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("get(c) = %q", got)
	}
}
