package digest

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	good := Empty.Hash.String()
	tests := []struct {
		in      string
		wantErr string
	}{
		{good + "/0", ""},
		{good + "/12345", ""},
		{good, "not of the form hash/size"},
		{good + "/", "not a non-negative decimal"},
		{good + "/-1", "not a non-negative decimal"},
		{good + "/+1", "not a non-negative decimal"},
		{good + "/01", "not a non-negative decimal"},
		{good + "/1x", "not a non-negative decimal"},
		{good + "/99999999999999999999", "not a non-negative decimal"},
		{strings.ToUpper(good) + "/0", "not lowercase hex"},
		{good[:63] + "/0", "has 63 characters"},
		{good + "0/0", "has 65 characters"},
		{"/0", "has 0 characters"},
	}
	for _, tc := range tests {
		d, err := Parse(tc.in)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("Parse(%q): %v", tc.in, err)
			} else if d.String() != tc.in {
				t.Errorf("Parse(%q).String() = %q", tc.in, d.String())
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("Parse(%q) error = %v, want ErrInvalid containing %q", tc.in, err, tc.wantErr)
		}
	}
}

func TestEmpty(t *testing.T) {
	if Empty.String() != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0" {
		t.Fatalf("Empty = %v", Empty)
	}
	if OfBytes(nil) != Empty || !Empty.IsEmpty() {
		t.Fatal("OfBytes(nil) is not Empty")
	}
}

func TestProtoRoundTrip(t *testing.T) {
	d := OfBytes([]byte("hello"))
	back, err := FromProto(d.Proto())
	if err != nil || back != d {
		t.Fatalf("FromProto(Proto()) = %v, %v", back, err)
	}
	if _, err := FromProto(nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("FromProto(nil) = %v", err)
	}
}

func TestReaderVerifies(t *testing.T) {
	data := []byte("some content")
	d := OfBytes(data)
	if got, err := io.ReadAll(Reader(bytes.NewReader(data), d)); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("good content: %q, %v", got, err)
	}
	for name, bad := range map[string][]byte{
		"short":   data[:5],
		"long":    append(append([]byte{}, data...), 'x'),
		"changed": []byte("some c0ntent"),
	} {
		if _, err := io.ReadAll(Reader(bytes.NewReader(bad), d)); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s content: error %v, want ErrMismatch", name, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Empty.String())
	f.Add("abc/1")
	f.Add(Empty.Hash.String() + "/007")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrInvalid", s, err)
			}
			return
		}
		if d.String() != s {
			t.Fatalf("Parse(%q) round-trips to %q", s, d.String())
		}
	})
}
