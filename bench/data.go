package bench

import (
	"bytes"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding"
	"fmt"
	"math/rand/v2"

	"github.com/mound-build/mound/cas/digest"
)

// source generates the content of a run. Seeded from crypto/rand, so every
// run's content is new to the server. Not safe for concurrent use: content
// is generated before the measurement that uses it starts.
type source struct {
	chacha *rand.ChaCha8
	rng    *rand.Rand
	// random and text are the shared bodies of stream blobs, generated
	// once per run (see streamBlob).
	random, text []byte
}

func newSource(bodySize int) *source {
	var seed [32]byte
	cryptorand.Read(seed[:])
	c := rand.NewChaCha8(seed)
	s := &source{chacha: c, rng: rand.New(c)}
	s.random = s.bytes(bodySize)
	s.text = s.compressible(bodySize)
	return s
}

// bytes returns n new incompressible bytes.
func (s *source) bytes(n int) []byte {
	b := make([]byte, n)
	s.chacha.Read(b)
	return b
}

// compressible returns n bytes of text-like content, like build logs or
// generated source: lines made from a couple of thousand templates of
// words drawn from a vocabulary made for this run, each line ending in a
// number and words of its own. zstd at its fastest level compresses it
// about 4 times.
func (s *source) compressible(n int) []byte {
	const vocabulary, templates = 2048, 2048
	words := make([][]byte, vocabulary)
	for i := range words {
		words[i] = make([]byte, 2+s.rng.IntN(10))
		for j := range words[i] {
			words[i][j] = 'a' + byte(s.rng.IntN(26))
		}
	}
	lines := make([][]byte, templates)
	for i := range lines {
		for range 3 + s.rng.IntN(10) {
			lines[i] = append(append(lines[i], words[s.rng.IntN(vocabulary)]...), ' ')
		}
	}
	var b bytes.Buffer
	b.Grow(n + 256)
	for b.Len() < n {
		// IntN of IntN favours small indices: a few templates are
		// frequent, most are rare, as in real text.
		b.Write(lines[s.rng.IntN(1+s.rng.IntN(templates))])
		fmt.Fprintf(&b, "%d", s.rng.IntN(1000000))
		for range 3 {
			b.WriteByte(' ')
			b.Write(words[s.rng.IntN(vocabulary)])
		}
		b.WriteByte('\n')
	}
	return b.Bytes()[:n]
}

// hashes returns n new random digests of blobs of 1 to maxSize bytes,
// which no server holds.
func (s *source) hashes(n, maxSize int) []digest.Digest {
	ds := make([]digest.Digest, n)
	for i := range ds {
		s.chacha.Read(ds[i].Hash[:])
		ds[i].Size = 1 + int64(s.rng.IntN(maxSize))
	}
	return ds
}

// smallBlobs returns n new random blobs of minSize to maxSize bytes,
// carved from one allocation.
func (s *source) smallBlobs(n, minSize, maxSize int) []blob {
	sizes := make([]int, n)
	total := 0
	for i := range sizes {
		sizes[i] = minSize + s.rng.IntN(maxSize-minSize+1)
		total += sizes[i]
	}
	arena := s.bytes(total)
	blobs := make([]blob, n)
	for i, size := range sizes {
		data := arena[:size:size]
		arena = arena[size:]
		blobs[i] = blob{data: data, d: digest.OfBytes(data)}
	}
	return blobs
}

// blob is a small blob held whole in memory.
type blob struct {
	data []byte
	d    digest.Digest
}

// tailSize is the unique end of each stream blob.
const tailSize = 64

// minStreamSize keeps a stream blob longer than its unique tail.
const minStreamSize = 4 << 10

// streamBlob is a large blob made of a body shared by every blob of a run
// and a tail of its own, so that each blob is new to the server while the
// run holds one body in memory and hashes it once (see streamBlobs).
type streamBlob struct {
	body []byte // shared; never modified
	tail []byte
	d    digest.Digest
	// zstd is the whole blob compressed, for compressed-blobs writes.
	zstd []byte
}

// streamBlobs returns n new blobs of size bytes: compressible text when
// text is set, else random bytes.
func (s *source) streamBlobs(n, size int, text bool) ([]*streamBlob, error) {
	body := s.random[:size-tailSize]
	if text {
		body = s.text[:size-tailSize]
	}
	// The SHA-256 state after the body is saved once and resumed for each
	// tail: hashing 64 MiB per blob would cost more than the measurement.
	h := sha256.New()
	h.Write(body)
	state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("save sha256 state: %w", err)
	}
	blobs := make([]*streamBlob, n)
	for i := range blobs {
		b := &streamBlob{body: body, tail: make([]byte, tailSize)}
		if text {
			for j := range b.tail {
				b.tail[j] = 'a' + byte(s.rng.IntN(26))
			}
		} else {
			s.chacha.Read(b.tail)
		}
		h := sha256.New()
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
			return nil, fmt.Errorf("resume sha256 state: %w", err)
		}
		h.Write(b.tail)
		h.Sum(b.d.Hash[:0])
		b.d.Size = int64(size)
		blobs[i] = b
	}
	return blobs, nil
}

// size returns the blob's length.
func (b *streamBlob) size() int64 { return int64(len(b.body) + len(b.tail)) }

// slice returns bytes [off, off+n) of the blob (n is cut at the end). The
// result aliases the body, or scratch when the range reaches into the tail.
func (b *streamBlob) slice(off int64, n int, scratch []byte) []byte {
	n = int(min(int64(n), b.size()-off))
	if end := off + int64(n); end <= int64(len(b.body)) {
		return b.body[off:end]
	}
	out := scratch[:0]
	if off < int64(len(b.body)) {
		out = append(out, b.body[off:]...)
	}
	tailOff := max(0, int(off)-len(b.body))
	return append(out, b.tail[tailOff:n-len(out)+tailOff]...)
}

// matches reports whether p is the blob's content at off.
func (b *streamBlob) matches(off int64, p []byte) bool {
	if off < 0 || off+int64(len(p)) > b.size() {
		return false
	}
	if off < int64(len(b.body)) {
		k := min(len(p), len(b.body)-int(off))
		if !bytes.Equal(p[:k], b.body[off:int(off)+k]) {
			return false
		}
		p, off = p[k:], off+int64(k)
		if len(p) == 0 {
			return true
		}
	}
	t := int(off) - len(b.body)
	return bytes.Equal(p, b.tail[t:t+len(p)])
}

// bytes returns the whole blob in one new buffer.
func (b *streamBlob) bytes() []byte {
	out := make([]byte, 0, b.size())
	return append(append(out, b.body...), b.tail...)
}
