package resource

import (
	"errors"
	"strings"
	"testing"

	"github.com/mound-build/mound/cas/digest"
)

var h = digest.Empty.Hash.String()

func TestParseRead(t *testing.T) {
	tests := []struct {
		in       string
		instance string
		comp     Compressor
		wantErr  string
	}{
		{"blobs/" + h + "/0", "", Identity, ""},
		{"main/blobs/" + h + "/0", "main", Identity, ""},
		{"a/b/c/blobs/sha256/" + h + "/0", "a/b/c", Identity, ""},
		{"x/compressed-blobs/zstd/" + h + "/0", "x", Zstd, ""},
		{"compressed-blobs/gzip/" + h + "/0", "", "", "not supported"},
		{"compressed-blobs", "", "", "names no compressor"},
		{"blobs/" + h, "", "", "no {hash}/{size}"},
		{"blobs/" + h + "/0/extra", "", "", "trailing"},
		{"blobs/" + h + "/-3", "", "", "non-negative"},
		{"blobs/abc/3", "", "", "characters"},
		{"a//b/blobs/" + h + "/0", "", "", "empty or relative"},
		{"nothing/here", "", "", "no blobs/"},
		{"", "", "", "no blobs/"},
	}
	for _, tc := range tests {
		n, err := ParseRead(tc.in)
		if tc.wantErr != "" {
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseRead(%q) = %v, want error containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRead(%q): %v", tc.in, err)
			continue
		}
		if n.Instance != tc.instance || n.Compressor != tc.comp || n.Digest != digest.Empty {
			t.Errorf("ParseRead(%q) = %+v", tc.in, n)
		}
	}
}

func TestParseWrite(t *testing.T) {
	n, err := ParseWrite("inst/uploads/1234/blobs/" + h + "/0/some/metadata")
	if err != nil || n.Instance != "inst" || n.UploadID != "1234" || n.Digest != digest.Empty {
		t.Fatalf("ParseWrite = %+v, %v", n, err)
	}
	n, err = ParseWrite("uploads/u/compressed-blobs/zstd/" + h + "/0")
	if err != nil || n.Compressor != Zstd {
		t.Fatalf("ParseWrite compressed = %+v, %v", n, err)
	}
	for _, bad := range []string{"blobs/" + h + "/0", "uploads/u", "uploads//blobs/" + h + "/0", "x/uploads/u/blobs/nothex/1"} {
		if _, err := ParseWrite(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseWrite(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	d := digest.OfBytes([]byte("x"))
	for _, c := range []Compressor{Identity, Zstd} {
		n, err := ParseRead(ReadName("a/b", d, c))
		if err != nil || n.Digest != d || n.Compressor != c || n.Instance != "a/b" {
			t.Errorf("read round trip %q: %+v %v", c, n, err)
		}
		n, err = ParseWrite(WriteName("", "id", d, c))
		if err != nil || n.Digest != d || n.Compressor != c || n.UploadID != "id" {
			t.Errorf("write round trip %q: %+v %v", c, n, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("main/blobs/" + h + "/0")
	f.Add("uploads/u/compressed-blobs/zstd/sha256/" + h + "/10/meta")
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseRead(s); err == nil {
			back, err := ParseRead(ReadName(n.Instance, n.Digest, n.Compressor))
			if err != nil || back != n {
				t.Fatalf("ParseRead(%q) = %+v does not round-trip: %+v %v", s, n, back, err)
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("ParseRead(%q): error %v does not wrap ErrInvalid", s, err)
		}
		if n, err := ParseWrite(s); err == nil {
			back, err := ParseWrite(WriteName(n.Instance, n.UploadID, n.Digest, n.Compressor))
			if err != nil || back != n {
				t.Fatalf("ParseWrite(%q) = %+v does not round-trip: %+v %v", s, n, back, err)
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("ParseWrite(%q): error %v does not wrap ErrInvalid", s, err)
		}
	})
}
