package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the gateway's collectors and the registry they live in.
type Metrics struct {
	Registry *prometheus.Registry

	// Requests counts finished HTTP/WS requests by route, model and status.
	Requests *prometheus.CounterVec
	// TTFT is the time from request arrival to the first generated token.
	TTFT *prometheus.HistogramVec
	// Duration is the time from request arrival to the end of the response.
	Duration *prometheus.HistogramVec
	// Tokens counts prompt and completion tokens by model.
	Tokens *prometheus.CounterVec
	// ReplicaStates counts replicas by model and state.
	ReplicaStates *prometheus.GaugeVec
	// Restarts counts replica restarts by model.
	Restarts *prometheus.CounterVec
	// StartSeconds is the time from launching a replica to it being ready
	// (cold start).
	StartSeconds *prometheus.HistogramVec
	// ColdStarts counts the starts of replicas that were stopped for idleness
	// (scale to zero) and woken by a request, by model.
	ColdStarts *prometheus.CounterVec
	// ColdStartSeconds is the time from a request waking an idle replica to the
	// replica being ready, by model.
	ColdStartSeconds *prometheus.HistogramVec
	// QueueDepth is the number of requests waiting for a replica, by model.
	QueueDepth *prometheus.GaugeVec
	// Retries counts requests retried on another replica after a crash.
	Retries *prometheus.CounterVec
	// FeedDelay is the time from a change made through another gateway (its row in
	// the change feed) to this gateway having applied it, by kind.
	FeedDelay *prometheus.HistogramVec
}

// New creates the collectors in a fresh registry (with Go and process
// collectors).
func New() *Metrics {
	latency := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ragway_requests_total", Help: "Requests handled, by route, model and HTTP status.",
		}, []string{"route", "model", "status"}),
		TTFT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ragway_time_to_first_token_seconds", Help: "Time from request arrival to the first token.", Buckets: latency,
		}, []string{"model"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ragway_request_duration_seconds", Help: "Time from request arrival to the end of the response.", Buckets: latency,
		}, []string{"route", "model"}),
		Tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ragway_tokens_total", Help: "Tokens processed, by model and kind (prompt, completion).",
		}, []string{"model", "kind"}),
		ReplicaStates: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ragway_replicas", Help: "Replicas by model and state.",
		}, []string{"model", "state"}),
		Restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ragway_replica_restarts_total", Help: "Replica restarts after a crash or failed health check, by model.",
		}, []string{"model"}),
		StartSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ragway_replica_start_seconds", Help: "Time from launching a replica to ready (cold start).", Buckets: latency,
		}, []string{"model"}),
		ColdStarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ragway_cold_starts_total", Help: "Starts of replicas stopped for idleness (idle_timeout) and woken by a request, by model.",
		}, []string{"model"}),
		ColdStartSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ragway_cold_start_seconds", Help: "Time from a request waking an idle replica to the replica being ready, by model.", Buckets: latency,
		}, []string{"model"}),
		QueueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ragway_queue_depth", Help: "Requests waiting for a replica, by model.",
		}, []string{"model"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ragway_request_retries_total", Help: "Requests retried on another replica after their replica failed before the first token.",
		}, []string{"model"}),
		FeedDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ragway_feed_delay_seconds", Help: "Time from a change made through another gateway to this gateway applying it, by kind.", Buckets: latency,
		}, []string{"kind"}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.Requests, m.TTFT, m.Duration, m.Tokens, m.ReplicaStates, m.Restarts, m.StartSeconds, m.ColdStarts, m.ColdStartSeconds, m.QueueDepth, m.Retries, m.FeedDelay,
	)
	return m
}

// ObserveRequest records a finished request: its status and its duration
// since start. A nil *Metrics records nothing (tests).
func (m *Metrics) ObserveRequest(route, model string, status int, start time.Time) {
	if m == nil {
		return
	}
	m.Requests.WithLabelValues(route, model, strconv.Itoa(status)).Inc()
	m.Duration.WithLabelValues(route, model).Observe(time.Since(start).Seconds())
}

// ObserveFirstToken records the time from start to a request's first token.
func (m *Metrics) ObserveFirstToken(model string, start time.Time) {
	if m == nil {
		return
	}
	m.TTFT.WithLabelValues(model).Observe(time.Since(start).Seconds())
}

// AddTokens counts a request's prompt and completion tokens.
func (m *Metrics) AddTokens(model string, prompt, completion int) {
	if m == nil {
		return
	}
	if prompt > 0 {
		m.Tokens.WithLabelValues(model, "prompt").Add(float64(prompt))
	}
	if completion > 0 {
		m.Tokens.WithLabelValues(model, "completion").Add(float64(completion))
	}
}

// ObserveChange records that a change of kind, made at, was applied now.
func (m *Metrics) ObserveChange(kind string, at time.Time) {
	if m == nil {
		return
	}
	m.FeedDelay.WithLabelValues(kind).Observe(max(time.Since(at), 0).Seconds())
}
