// Package metrics defines the gateway's Prometheus metrics in one place, so
// names and labels stay consistent between the HTTP layer and the workers.
// It is not an exporter framework: callers update the collectors directly.
package metrics
