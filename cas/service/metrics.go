package service

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the storage services' Prometheus metrics. Request counts and
// latencies of every RPC are recorded by package server's interceptor.
type Metrics struct {
	ACHits       prometheus.Counter
	ACMisses     prometheus.Counter
	ACUpdates    prometheus.Counter
	BlobsFound   prometheus.Counter
	BlobsMissed  prometheus.Counter
	BytesRead    *prometheus.CounterVec // by RPC kind
	BytesWritten *prometheus.CounterVec // by RPC kind
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ACHits:       prometheus.NewCounter(prometheus.CounterOpts{Name: "mound_ac_hits_total", Help: "GetActionResult calls that found a complete result."}),
		ACMisses:     prometheus.NewCounter(prometheus.CounterOpts{Name: "mound_ac_misses_total", Help: "GetActionResult calls that found no result, or one with missing blobs."}),
		ACUpdates:    prometheus.NewCounter(prometheus.CounterOpts{Name: "mound_ac_updates_total", Help: "UpdateActionResult calls that stored a result."}),
		BlobsFound:   prometheus.NewCounter(prometheus.CounterOpts{Name: "mound_cas_find_present_total", Help: "Digests FindMissingBlobs found present."}),
		BlobsMissed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "mound_cas_find_missing_total", Help: "Digests FindMissingBlobs reported missing."}),
		BytesRead:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mound_cas_read_bytes_total", Help: "Blob bytes sent to clients (compressed size for compressed reads)."}, []string{"rpc"}),
		BytesWritten: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mound_cas_written_bytes_total", Help: "Blob bytes received from clients (as sent)."}, []string{"rpc"}),
	}
	if reg != nil {
		reg.MustRegister(m.ACHits, m.ACMisses, m.ACUpdates, m.BlobsFound, m.BlobsMissed, m.BytesRead, m.BytesWritten)
	}
	return m
}
