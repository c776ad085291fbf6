package digest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
)

// ErrMismatch is wrapped by the error a Verifier returns when the bytes it saw
// are not the blob its digest names.
var ErrMismatch = errors.New("content does not match digest")

// Verifier is the one place where mound checks bytes against the digest they
// claim to have. Everything that receives blob content from outside (clients,
// peers, the remote CAS) passes it through a Verifier before storing or using
// it; code behind it trusts verified bytes. A Verifier is not safe for
// concurrent use.
type Verifier struct {
	want Digest
	h    hash.Hash
	n    int64
}

// NewVerifier returns a Verifier expecting the blob want.
func NewVerifier(want Digest) *Verifier {
	return &Verifier{want: want, h: sha256.New()}
}

// Write hashes p. It fails as soon as more bytes arrive than the digest's size.
func (v *Verifier) Write(p []byte) (int, error) {
	if v.n+int64(len(p)) > v.want.Size {
		return 0, fmt.Errorf("%w: %v: received more than %d bytes", ErrMismatch, v.want, v.want.Size)
	}
	v.n += int64(len(p))
	v.h.Write(p)
	return len(p), nil
}

// Written returns how many bytes have been hashed so far.
func (v *Verifier) Written() int64 { return v.n }

// Check reports whether the bytes written so far are exactly the blob.
func (v *Verifier) Check() error {
	if v.n != v.want.Size {
		return fmt.Errorf("%w: %v: received %d bytes, digest says %d", ErrMismatch, v.want, v.n, v.want.Size)
	}
	var got Hash
	v.h.Sum(got[:0])
	if got != v.want.Hash {
		return fmt.Errorf("%w: %v: received bytes hash to %v", ErrMismatch, v.want, got)
	}
	return nil
}

// Reader wraps r so that reading it to the end verifies it against want: the
// final Read returns an error wrapping ErrMismatch instead of io.EOF when the
// content is wrong, so a consumer that stops at the first error never
// accepts bad bytes.
func Reader(r io.Reader, want Digest) io.Reader {
	return &verifyingReader{r: r, v: NewVerifier(want)}
}

type verifyingReader struct {
	r io.Reader
	v *Verifier
}

func (vr *verifyingReader) Read(p []byte) (int, error) {
	n, err := vr.r.Read(p)
	if n > 0 {
		if _, werr := vr.v.Write(p[:n]); werr != nil {
			return 0, werr
		}
	}
	if err == io.EOF {
		if cerr := vr.v.Check(); cerr != nil {
			return n, cerr
		}
	}
	return n, err
}
