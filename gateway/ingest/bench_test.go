package ingest

import (
	"context"
	"strings"
	"testing"
)

// BenchmarkExtractHTML extracts ~2 MB of HTML; MB/s is the throughput (the ingest path
// targets >= 5 MB/s overall).
func BenchmarkExtractHTML(b *testing.B) {
	var sb strings.Builder
	for sb.Len() < 2<<20 {
		sb.WriteString(htmlFixture)
		sb.WriteString("<section><h2>检索增强生成</h2><p>Ragway 把文档切成块，<a href=\"#x\">链接</a> and &amp; entities.</p><ul><li>one</li><li>two</li></ul></section>")
	}
	data := []byte(sb.String())
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Extract(ctx, "big.html", HTML, data); err != nil {
			b.Fatal(err)
		}
	}
}
