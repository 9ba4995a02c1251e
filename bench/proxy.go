package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"
)

var (
	proxyBench = flag.Bool("proxy", true, "measure the vllm-proxy hop (gateway → vllm-proxy → upstream vs the upstream directly)")
	proxyDelay = flag.Int("proxy-delay-ms", 10, "upstream per-token delay for the proxy measurement (the pace of a serving engine)")
)

// upstreamKeyEnv holds the upstream gateway's key in the front gateway's environment.
const upstreamKeyEnv = "BENCH_UPSTREAM_KEY"

// runProxy measures what the vllm-proxy hop costs: the same paced load
// (ragway-echo behind a ragway gateway as the OpenAI-compatible upstream)
// sent to the upstream directly and through a front gateway whose model is
// served by ragway-vllm-proxy.
func runProxy(binDir string, streams, words int, dur time.Duration, ttftN int) error {
	up, _, err := spawnGateway(binDir, fmt.Sprintf(
		"  - {name: echo, backend: echo, max_concurrency: %d, max_queue: 1024, options: {parallel: %d, delay_ms: %d}}\n",
		streams, streams, *proxyDelay), streams, nil)
	if err != nil {
		return err
	}
	defer up.stop()
	if err := up.waitServing(30 * time.Second); err != nil {
		return err
	}
	// The upstream gateway wants its key: the plugin reads it from the environment
	// it inherits from the front gateway (option api_key_env).
	front, _, err := spawnGateway(binDir, fmt.Sprintf(
		"  - {name: echo, backend: vllm-proxy, max_concurrency: %d, max_queue: 1024, options: {upstreams: [%q], upstream_model: echo, max_idle_conns: %d, api_key_env: %s}}\n",
		streams, up.url, streams, upstreamKeyEnv), streams, []string{upstreamKeyEnv + "=" + up.key})
	if err != nil {
		return err
	}
	defer front.stop()
	if err := front.waitServing(30 * time.Second); err != nil {
		return err
	}
	prompt := strings.TrimSpace(strings.Repeat("tok ", words))
	dRate, err := throughput(streams, dur, func(ctx context.Context) (int, error) { return up.stream(ctx, prompt) })
	if err != nil {
		return fmt.Errorf("direct: %w", err)
	}
	pRate, err := throughput(streams, dur, func(ctx context.Context) (int, error) { return front.stream(ctx, prompt) })
	if err != nil {
		return fmt.Errorf("via proxy: %w", err)
	}
	dTTFT, err := ttft(ttftN, func(ctx context.Context) (time.Duration, error) { return up.firstToken(ctx, "hello world") })
	if err != nil {
		return fmt.Errorf("direct ttft: %w", err)
	}
	pTTFT, err := ttft(ttftN, func(ctx context.Context) (time.Duration, error) { return front.firstToken(ctx, "hello world") })
	if err != nil {
		return fmt.Errorf("proxy ttft: %w", err)
	}
	fmt.Printf("%-34s %14s %14s %8s\n", fmt.Sprintf("vllm-proxy hop (echo, %dms/token)", *proxyDelay), "upstream", "via proxy", "ratio")
	fmt.Printf("%-34s %14.0f %14.0f %8.2f\n", fmt.Sprintf("tokens/s, %d streams", streams), dRate, pRate, pRate/dRate)
	fmt.Printf("%-34s %14s %14s %8s\n", "TTFT p50, 1 stream", ms(dTTFT.p50), ms(pTTFT.p50), signedMs(pTTFT.p50-dTTFT.p50))
	fmt.Printf("%-34s %14s %14s %8s\n", "TTFT p99, 1 stream", ms(dTTFT.p99), ms(pTTFT.p99), signedMs(pTTFT.p99-dTTFT.p99))
	fmt.Printf("(both gateways check each request's API key against Postgres: the hop adds the front gateway's check)\n")
	fmt.Printf("targets: throughput ratio ≥ 0.95; added TTFT p50 ≤ 2ms\n\n")
	return nil
}
