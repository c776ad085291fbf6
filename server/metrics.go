package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// rpcMetrics count and time every RPC, by method and status code.
type rpcMetrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

func newRPCMetrics(reg prometheus.Registerer) *rpcMetrics {
	m := &rpcMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mound_grpc_requests_total", Help: "RPCs handled, by method and status code.",
		}, []string{"method", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mound_grpc_request_seconds", Help: "RPC latency, by method.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"method"}),
	}
	reg.MustRegister(m.requests, m.seconds)
	return m
}

func (m *rpcMetrics) observe(method string, start time.Time, err error) {
	m.requests.WithLabelValues(method, status.Code(err).String()).Inc()
	m.seconds.WithLabelValues(method).Observe(time.Since(start).Seconds())
}

func (m *rpcMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.observe(info.FullMethod, start, err)
	return resp, err
}

func (m *rpcMetrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	err := h(srv, ss)
	m.observe(info.FullMethod, start, err)
	return err
}

// storeStats is the optional ability of a store to report its size.
type storeStats interface {
	Stats() (blobs int, bytes int64)
}

// storeCollector exports a store's size as gauges, read at scrape time.
type storeCollector struct{ st storeStats }

// storeEvictions is the optional ability of a store to count evictions.
type storeEvictions interface {
	Evictions() int64
}

var (
	storeEvictionsDesc = prometheus.NewDesc("mound_cas_evictions_total", "Blobs evicted to stay under the store's size limit.", nil, nil)
	storeBlobsDesc     = prometheus.NewDesc("mound_cas_blobs", "Blobs in the CAS.", nil, nil)
	storeBytesDesc     = prometheus.NewDesc("mound_cas_bytes", "Bytes the CAS uses for blobs, with per-blob overhead.", nil, nil)
)

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- storeBlobsDesc
	ch <- storeBytesDesc
	if _, ok := c.st.(storeEvictions); ok {
		ch <- storeEvictionsDesc
	}
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	n, size := c.st.Stats()
	ch <- prometheus.MustNewConstMetric(storeBlobsDesc, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(storeBytesDesc, prometheus.GaugeValue, float64(size))
	if ev, ok := c.st.(storeEvictions); ok {
		ch <- prometheus.MustNewConstMetric(storeEvictionsDesc, prometheus.CounterValue, float64(ev.Evictions()))
	}
}
