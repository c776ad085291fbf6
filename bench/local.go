package bench

import (
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/klauspost/compress/zstd"
)

// localRepeats is how many times each single-core figure is measured; the
// best is kept, as the one least disturbed by the rest of the machine.
const localRepeats = 3

// Local holds single-core figures of the machine the bench runs on, in MB
// of input per second, for reading the servers' figures against.
type Local struct {
	// Bytes is the size of the buffer measured.
	Bytes int `json:"bytes"`
	// SHA256 is crypto/sha256 over random bytes.
	SHA256 float64 `json:"sha256_mb_s"`
	// ZstdFastest is klauspost zstd at SpeedFastest over the compressible
	// data, the level the bench compresses its uploads with; the zstd
	// read aim is judged against it. ZstdFastestRatio is the ratio it
	// achieves.
	ZstdFastest      float64 `json:"zstd_fastest_mb_s"`
	ZstdFastestRatio float64 `json:"zstd_fastest_ratio"`
	// ZstdDefault and ZstdDefaultRatio are the same at SpeedDefault
	// (about zstd level 3, the level of zstd's command line).
	ZstdDefault      float64 `json:"zstd_default_mb_s"`
	ZstdDefaultRatio float64 `json:"zstd_default_ratio"`
}

// measureLocal measures the single-core figures on the first n bytes of
// the run's random and compressible data.
func measureLocal(src *source, n int) (Local, error) {
	l := Local{Bytes: n}
	random, text := src.random[:n], src.text[:n]
	l.SHA256 = best(n, func() { sha256.Sum256(random) })
	var err error
	if l.ZstdFastest, l.ZstdFastestRatio, err = zstdSpeed(text, zstd.SpeedFastest); err != nil {
		return l, err
	}
	if l.ZstdDefault, l.ZstdDefaultRatio, err = zstdSpeed(text, zstd.SpeedDefault); err != nil {
		return l, err
	}
	return l, nil
}

// best returns the better of each figure of l and m.
func (l Local) best(m Local) Local {
	l.SHA256 = max(l.SHA256, m.SHA256)
	if m.ZstdFastest > l.ZstdFastest {
		l.ZstdFastest, l.ZstdFastestRatio = m.ZstdFastest, m.ZstdFastestRatio
	}
	if m.ZstdDefault > l.ZstdDefault {
		l.ZstdDefault, l.ZstdDefaultRatio = m.ZstdDefault, m.ZstdDefaultRatio
	}
	return l
}

// zstdSpeed returns how fast one goroutine compresses data at level, in
// MB/s, and the compression ratio.
func zstdSpeed(data []byte, level zstd.EncoderLevel) (mbps, ratio float64, err error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return 0, 0, fmt.Errorf("zstd encoder: %w", err)
	}
	defer enc.Close()
	out := make([]byte, 0, len(data))
	mbps = best(len(data), func() { out = enc.EncodeAll(data, out[:0]) })
	return mbps, float64(len(data)) / float64(max(len(out), 1)), nil
}

// best runs fn localRepeats times over n bytes and returns the best speed
// in MB/s.
func best(n int, fn func()) float64 {
	var fastest time.Duration
	for i := range localRepeats {
		start := time.Now()
		fn()
		if d := time.Since(start); i == 0 || d < fastest {
			fastest = d
		}
	}
	return float64(n) / 1e6 / max(fastest.Seconds(), 1e-9)
}
