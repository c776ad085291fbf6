package digest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"
)

// HashSize is the length in bytes of a SHA-256 hash.
const HashSize = sha256.Size

// Hash is a raw SHA-256 hash.
type Hash [HashSize]byte

// String returns the lowercase hex form of h.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Digest identifies a blob by its SHA-256 hash and its size in bytes. It is
// comparable with == and usable as a map key. The zero value is not a valid
// digest of any blob; use Empty for the empty blob.
type Digest struct {
	Hash Hash
	Size int64
}

// Empty is the digest of the empty blob, which every store always holds.
var Empty = Digest{Hash: sha256.Sum256(nil), Size: 0}

// ErrInvalid is wrapped by every error this package returns for a malformed
// hash, size or digest string.
var ErrInvalid = errors.New("invalid digest")

// New validates a lowercase hex hash and a size and returns the digest.
func New(hash string, size int64) (Digest, error) {
	var d Digest
	if len(hash) != 2*HashSize {
		return d, fmt.Errorf("%w: hash %q has %d characters, want %d hex digits of SHA-256", ErrInvalid, truncate(hash), len(hash), 2*HashSize)
	}
	for i := 0; i < len(hash); i++ {
		c := hash[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return d, fmt.Errorf("%w: hash %q is not lowercase hex", ErrInvalid, truncate(hash))
		}
	}
	if size < 0 {
		return d, fmt.Errorf("%w: size %d is negative", ErrInvalid, size)
	}
	hex.Decode(d.Hash[:], []byte(hash))
	d.Size = size
	return d, nil
}

// Parse reads the textual form "hash/size" written by String.
func Parse(s string) (Digest, error) {
	hash, sizeText, ok := strings.Cut(s, "/")
	if !ok {
		return Digest{}, fmt.Errorf("%w: %q is not of the form hash/size", ErrInvalid, truncate(s))
	}
	size, err := ParseSize(sizeText)
	if err != nil {
		return Digest{}, err
	}
	return New(hash, size)
}

// ParseSize parses a decimal blob size, refusing signs, spaces and leading
// zeros so that every size has exactly one spelling.
func ParseSize(s string) (int64, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("%w: size %q is not a non-negative decimal number", ErrInvalid, truncate(s))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: size %q is not a non-negative decimal number", ErrInvalid, truncate(s))
	}
	return n, nil
}

// FromProto validates a REAPI digest message. A nil message is invalid.
func FromProto(p *repb.Digest) (Digest, error) {
	if p == nil {
		return Digest{}, fmt.Errorf("%w: digest is missing", ErrInvalid)
	}
	return New(p.GetHash(), p.GetSizeBytes())
}

// Proto returns d as a new REAPI digest message.
func (d Digest) Proto() *repb.Digest {
	return &repb.Digest{Hash: d.Hash.String(), SizeBytes: d.Size}
}

// String returns "hash/size", the form Parse reads and the CLI prints.
func (d Digest) String() string {
	return d.Hash.String() + "/" + strconv.FormatInt(d.Size, 10)
}

// IsEmpty reports whether d is the digest of the empty blob.
func (d Digest) IsEmpty() bool { return d == Empty }

// OfBytes returns the digest of b.
func OfBytes(b []byte) Digest {
	return Digest{Hash: sha256.Sum256(b), Size: int64(len(b))}
}

// OfMessage serializes m deterministically and returns its bytes and digest.
func OfMessage(m proto.Message) ([]byte, Digest, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, Digest{}, fmt.Errorf("marshal %T: %w", m, err)
	}
	return b, OfBytes(b), nil
}

func truncate(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// OfReader reads r to its end and returns the digest of what it read.
func OfReader(r io.Reader) (Digest, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return Digest{}, err
	}
	var d Digest
	h.Sum(d.Hash[:0])
	d.Size = n
	return d, nil
}
