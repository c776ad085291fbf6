package resource

import (
	"errors"
	"fmt"
	"strings"

	"github.com/mound-build/mound/cas/digest"
)

// Compressor names a ByteStream compression of a blob.
type Compressor string

const (
	// Identity is uncompressed content (the "blobs/" form).
	Identity Compressor = ""
	// Zstd is the "compressed-blobs/zstd/" form.
	Zstd Compressor = "zstd"
)

// ErrInvalid is wrapped by every error for a malformed resource name.
var ErrInvalid = errors.New("invalid resource name")

// Name is a parsed blob resource name.
type Name struct {
	Instance   string
	Digest     digest.Digest
	Compressor Compressor
	// UploadID is the client's uuid segment; empty for read names.
	UploadID string
}

// reserved are path segments an instance name may not contain, because they
// would make resource names ambiguous (REAPI forbids them).
var reserved = map[string]bool{
	"blobs": true, "uploads": true, "compressed-blobs": true, "actions": true,
	"actionResults": true, "operations": true, "capabilities": true,
}

// ValidateInstance checks an instance name as REAPI defines it: slash
// separated segments, none empty, none reserved.
func ValidateInstance(instance string) error {
	if instance == "" {
		return nil
	}
	for _, seg := range strings.Split(instance, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w: instance name %q has an empty or relative segment", ErrInvalid, instance)
		}
		if reserved[seg] {
			return fmt.Errorf("%w: instance name %q contains the reserved segment %q", ErrInvalid, instance, seg)
		}
	}
	return nil
}

// ParseRead parses the resource name of a ByteStream Read.
func ParseRead(s string) (Name, error) {
	segs := strings.Split(s, "/")
	i := indexOf(segs, "blobs", "compressed-blobs")
	if i < 0 {
		return Name{}, fmt.Errorf("%w: %q has no blobs/ or compressed-blobs/ segment", ErrInvalid, s)
	}
	n := Name{Instance: strings.Join(segs[:i], "/")}
	if err := ValidateInstance(n.Instance); err != nil {
		return Name{}, err
	}
	rest, err := n.parseBlob(s, segs[i:])
	if err != nil {
		return Name{}, err
	}
	if len(rest) != 0 {
		return Name{}, fmt.Errorf("%w: %q has trailing segments after the size", ErrInvalid, s)
	}
	return n, nil
}

// ParseWrite parses the resource name of a ByteStream Write. Trailing
// optional metadata segments are accepted and ignored.
func ParseWrite(s string) (Name, error) {
	segs := strings.Split(s, "/")
	i := indexOf(segs, "uploads")
	if i < 0 || i+2 >= len(segs) {
		return Name{}, fmt.Errorf("%w: %q is not of the form {instance}/uploads/{uuid}/blobs/{hash}/{size}", ErrInvalid, s)
	}
	n := Name{Instance: strings.Join(segs[:i], "/"), UploadID: segs[i+1]}
	if err := ValidateInstance(n.Instance); err != nil {
		return Name{}, err
	}
	if n.UploadID == "" {
		return Name{}, fmt.Errorf("%w: %q has an empty upload id", ErrInvalid, s)
	}
	if _, err := n.parseBlob(s, segs[i+2:]); err != nil {
		return Name{}, err
	}
	return n, nil
}

// parseBlob reads "blobs/[sha256/]hash/size" or
// "compressed-blobs/zstd/[sha256/]hash/size" and returns what follows.
func (n *Name) parseBlob(s string, segs []string) ([]string, error) {
	switch segs[0] {
	case "blobs":
		segs = segs[1:]
	case "compressed-blobs":
		if len(segs) < 2 {
			return nil, fmt.Errorf("%w: %q names no compressor", ErrInvalid, s)
		}
		if segs[1] != string(Zstd) {
			return nil, fmt.Errorf("%w: %q: compressor %q is not supported (only zstd)", ErrInvalid, s, segs[1])
		}
		n.Compressor = Zstd
		segs = segs[2:]
	default:
		return nil, fmt.Errorf("%w: %q: expected blobs/ or compressed-blobs/, found %q", ErrInvalid, s, segs[0])
	}
	if len(segs) > 0 && segs[0] == "sha256" {
		segs = segs[1:]
	}
	if len(segs) < 2 {
		return nil, fmt.Errorf("%w: %q has no {hash}/{size}", ErrInvalid, s)
	}
	size, err := digest.ParseSize(segs[1])
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrInvalid, s, err)
	}
	d, err := digest.New(segs[0], size)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrInvalid, s, err)
	}
	n.Digest = d
	return segs[2:], nil
}

func indexOf(segs []string, want ...string) int {
	for i, s := range segs {
		for _, w := range want {
			if s == w {
				return i
			}
		}
	}
	return -1
}

// ReadName builds the resource name for reading d.
func ReadName(instance string, d digest.Digest, c Compressor) string {
	return prefix(instance) + blobPart(d, c)
}

// WriteName builds the resource name for uploading d under uploadID.
func WriteName(instance, uploadID string, d digest.Digest, c Compressor) string {
	return prefix(instance) + "uploads/" + uploadID + "/" + blobPart(d, c)
}

func prefix(instance string) string {
	if instance == "" {
		return ""
	}
	return instance + "/"
}

func blobPart(d digest.Digest, c Compressor) string {
	if c == Identity {
		return "blobs/" + d.String()
	}
	return "compressed-blobs/" + string(c) + "/" + d.String()
}
