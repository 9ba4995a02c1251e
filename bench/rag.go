package main

// RAG ingest throughput (-only rag; search latency is bench/search.go's).
//
// Ingest: a corpus of the documentation shipped with Go ($(go env GOROOT)/doc: HTML
// and Markdown) and a synthetic mixed English/Chinese Markdown corpus (about
// -rag-corpus-mb in all; English sentences from a word chain trained on the Go docs,
// Chinese ones from a word list, with headings, lists and code fences, every document
// different) goes through the text path twice:
//
//   - in process: ingest.Extract + rag.Normalize + rag.Split + rag.ChunkVector for every
//     chunk, as the gateway's indexer runs them (no dense embedding: no model);
//   - through a gateway on a scratch database: every document uploaded one after the
//     other (multipart, ?wait=true), i.e. HTTP, extraction, chunking, the Postgres
//     COPY of the chunks and the embedded index's upsert.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ragway/ragway/gateway/ingest"
	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/vectorstore"
)

var (
	ragCorpusMB    = flag.Int("rag-corpus-mb", 20, "rag bench: size of the ingest corpus in MB (Go docs + synthetic Markdown)")
	ragChunkTokens = flag.Int("rag-chunk-tokens", 0, "rag bench: chunk size of the search arms' chunks (0: rag's default)")
	ragProfile     = flag.String("rag-cpuprofile", "", "rag bench: write the gateway's CPU profile of the ingest run here and print its top")
)

const (
	ragIngestTarget = 5.0 // MB/s
	ragTopK         = 5
	mb              = 1 << 20
)

// ragDoc is one document of the corpus, as uploaded.
type ragDoc struct {
	name, contentType string
	data              []byte
	goDoc             bool // from GOROOT/doc
}

func runRAG(binDir string) error {
	goDocs, gen, err := ragSources()
	if err != nil {
		return err
	}
	corpus := slices.Clone(goDocs)
	size := 0
	for _, d := range goDocs {
		size += len(d.data)
	}
	for i := 0; size < *ragCorpusMB*mb; i++ {
		d := gen.doc(i)
		corpus = append(corpus, d)
		size += len(d.data)
	}
	fmt.Printf("rag: ingest corpus %d documents, %.1f MB: %d files of %s (%.2f MB) + synthetic mixed English/Chinese Markdown; 1 MB = 2^20 bytes of the uploaded files\n",
		len(corpus), float64(size)/mb, len(goDocs), goDocDir(), float64(docBytes(goDocs))/mb)

	// In process: the text path alone.
	type rate struct {
		bytes, text, chunks int
		d                   time.Duration
	}
	var inGo, inSyn rate
	for _, set := range []struct {
		docs []ragDoc
		r    *rate
	}{{goDocs, &inGo}, {corpus[len(goDocs):], &inSyn}} {
		// The Go docs are small: repeat them for at least a second.
		for set.r.d < time.Second {
			start := time.Now()
			for _, d := range set.docs {
				text, chunks, err := textPath(d, nil)
				if err != nil {
					return err
				}
				set.r.bytes += len(d.data)
				set.r.text += text
				set.r.chunks += chunks
			}
			set.r.d += time.Since(start)
		}
	}

	// Through a gateway.
	gwGo, gwSyn, gwChunks, err := ragGatewayIngest(binDir, corpus, len(goDocs))
	if err != nil {
		return fmt.Errorf("gateway ingest: %w", err)
	}
	mbps := func(b int, d time.Duration) float64 { return float64(b) / mb / d.Seconds() }
	// in-process "all": the one-pass time of each part, weighted by the corpus.
	inAll := float64(size) / mb / (float64(docBytes(goDocs))/mb/mbps(inGo.bytes, inGo.d) + float64(size-docBytes(goDocs))/mb/mbps(inSyn.bytes, inSyn.d))
	fmt.Printf("%-40s %16s %16s %8s\n", "ingest MB/s (no dense embedding)", "in process", "gateway", "ratio")
	fmt.Printf("%-40s %16.1f %16.1f %8.2f\n", fmt.Sprintf("Go docs (%d HTML/Markdown files)", len(goDocs)), mbps(inGo.bytes, inGo.d), mbps(docBytes(goDocs), gwGo), mbps(docBytes(goDocs), gwGo)/mbps(inGo.bytes, inGo.d))
	fmt.Printf("%-40s %16.1f %16.1f %8.2f\n", fmt.Sprintf("synthetic en/zh Markdown (%d docs)", len(corpus)-len(goDocs)), mbps(inSyn.bytes, inSyn.d), mbps(size-docBytes(goDocs), gwSyn), mbps(size-docBytes(goDocs), gwSyn)/mbps(inSyn.bytes, inSyn.d))
	gwAll := mbps(size, gwGo+gwSyn)
	fmt.Printf("%-40s %16.1f %16.1f %8.2f\n", fmt.Sprintf("whole corpus (%.1f MB, %d chunks)", float64(size)/mb, gwChunks), inAll, gwAll, gwAll/inAll)
	fmt.Printf("(in process: ingest.Extract + rag.Normalize + rag.Split + rag.ChunkVector, one goroutine; gateway: one upload at a time, multipart ?wait=true: HTTP, extraction, chunking, Postgres COPY, embedded index)\n")
	fmt.Printf("targets: ingest ≥ %.0f MB/s\n", ragIngestTarget)
	verdict := "PASS"
	if gwAll < ragIngestTarget || inAll < ragIngestTarget {
		verdict = "FAIL"
	}
	fmt.Printf("verdict: %s — %.2f MB/s through the gateway, %.2f MB/s in process (target ≥ %.0f MB/s)\n\n", verdict, gwAll, inAll, ragIngestTarget)
	if *ragProfile != "" {
		out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=30", filepath.Join(binDir, "ragway"), *ragProfile).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pprof: %w\n%s", err, out)
		}
		fmt.Printf("gateway CPU profile (ingest run):\n%s\n", out)
	}

	return nil
}

func docBytes(docs []ragDoc) int {
	n := 0
	for _, d := range docs {
		n += len(d.data)
	}
	return n
}

// textPath runs a document through the gateway's text path and returns the bytes of
// its normalised text and its number of chunks; each chunk goes to fn when not nil.
func textPath(d ragDoc, fn func(rag.Chunk, vectorstore.Sparse)) (int, int, error) {
	f, err := ingest.Detect(d.name, d.contentType, d.data)
	if err != nil {
		return 0, 0, err
	}
	x, err := ingest.Options{MaxBytes: 4 << 20}.Extract(context.Background(), d.name, f, d.data)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", d.name, err)
	}
	text := rag.Normalize(x.Text)
	chunks := rag.Split(rag.Document{Title: x.Title, Text: text, Markdown: x.Markdown}, rag.Options{ChunkTokens: *ragChunkTokens})
	for _, c := range chunks {
		v := rag.ChunkVector(c.Heading, c.Text)
		if fn != nil {
			fn(c, v)
		}
	}
	return len(text), len(chunks), nil
}

// ragSources are the Go documentation's files and a generator of synthetic documents
// trained on them.
func ragSources() ([]ragDoc, *ragGen, error) {
	goDocs, err := goDocCorpus()
	if err != nil {
		return nil, nil, err
	}
	gen, err := newRAGGen(goDocs)
	return goDocs, gen, err
}

// goDocDir is $(go env GOROOT)/doc ("doc" if go is not on the PATH: the read fails).
func goDocDir() string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "doc"
	}
	return filepath.Join(strings.TrimSpace(string(out)), "doc")
}

// goDocCorpus reads the files of GOROOT/doc (not its subdirectories).
func goDocCorpus() ([]ragDoc, error) {
	dir := goDocDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("the Go documentation: %w", err)
	}
	var docs []ragDoc
	for _, e := range ents {
		ct := map[string]string{".html": "text/html", ".md": "text/markdown"}[filepath.Ext(e.Name())]
		if !e.Type().IsRegular() || ct == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		docs = append(docs, ragDoc{name: e.Name(), contentType: ct, data: b, goDoc: true})
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("no .html or .md files in %s", dir)
	}
	return docs, nil
}

// ragGatewayIngest uploads the corpus to a gateway, one document at a time, and
// returns the time of the first nGo documents, of the rest, and the chunks stored.
func ragGatewayIngest(binDir string, corpus []ragDoc, nGo int) (time.Duration, time.Duration, int, error) {
	models := "  - {name: echo, backend: echo, max_concurrency: 4, max_queue: 64, options: {parallel: 4}}\n"
	var args []string
	if *ragProfile != "" {
		args = append(args, "-cpuprofile", *ragProfile)
	}
	gw, logTail, err := spawnGateway(binDir, models, 4, nil, args...)
	if err != nil {
		return 0, 0, 0, err
	}
	defer gw.stop()
	if err := gw.waitServing(30 * time.Second); err != nil {
		return 0, 0, 0, fmt.Errorf("%w\n%s", err, logTail.String())
	}
	key, err := dbs.createKey(context.Background(), gw.dbURL, "rag", "chat,ingest")
	if err != nil {
		return 0, 0, 0, err
	}
	do := func(method, path, ct string, body []byte) ([]byte, int, error) {
		req, err := http.NewRequest(method, gw.url+path, bytes.NewReader(body))
		if err != nil {
			return nil, 0, err
		}
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := gw.client.Do(req)
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return b, resp.StatusCode, err
	}
	if b, code, err := do("POST", "/v1/knowledge-bases", "application/json", []byte(`{"name":"bench"}`)); err != nil || code != 201 {
		return 0, 0, 0, fmt.Errorf("create the knowledge base: %d %s %v", code, b, err)
	}
	var times [2]time.Duration
	chunks := 0
	for i, d := range corpus {
		var body bytes.Buffer
		w := multipart.NewWriter(&body)
		h := map[string][]string{
			"Content-Disposition": {`form-data; name="file"; filename="` + d.name + `"`},
			"Content-Type":        {d.contentType},
		}
		part, err := w.CreatePart(h)
		if err != nil {
			return 0, 0, 0, err
		}
		part.Write(d.data)
		w.Close()
		start := time.Now()
		b, code, err := do("POST", "/v1/knowledge-bases/bench/documents?wait=true", w.FormDataContentType(), body.Bytes())
		el := time.Since(start)
		if err != nil || code != 201 || !bytes.Contains(b, []byte(`"status":"indexed"`)) {
			return 0, 0, 0, fmt.Errorf("upload %s: %d %s %v\n%s", d.name, code, b, err, logTail.String())
		}
		var n int
		if j := bytes.Index(b, []byte(`"chunk_count":`)); j >= 0 {
			fmt.Sscan(string(b[j+len(`"chunk_count":`):]), &n)
		}
		chunks += n
		times[min(i/nGo, 1)] += el
	}
	return times[0], times[1], chunks, nil
}

// liveHeap is the heap in use after a full GC.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// queryPhrase is a phrase of text: 3 to 8 words, or 6 to 20 runes of Chinese, from
// a random place.
func queryPhrase(r *rand.Rand, text string) string {
	words := strings.Fields(text)
	if len(words) == 0 {
		return ""
	}
	i := r.IntN(len(words))
	w := words[i]
	if utf8.RuneCountInString(w) > 12 { // a run of Chinese
		rs := []rune(w)
		n := 6 + r.IntN(15)
		s := r.IntN(max(len(rs)-n, 1))
		e := min(s+n, len(rs))
		// Not half a Latin word (Chinese runs may hold some).
		for s < e && s > 0 && asciiAlnum(rs[s-1]) && asciiAlnum(rs[s]) {
			s++
		}
		for e > s && e < len(rs) && asciiAlnum(rs[e-1]) && asciiAlnum(rs[e]) {
			e--
		}
		return string(rs[s:e])
	}
	n := 3 + r.IntN(6)
	return strings.Join(words[i:min(i+n, len(words))], " ")
}

func asciiAlnum(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ragGen writes synthetic Markdown documents: English from a word chain trained on
// the Go docs, Chinese from a word list, mixed within paragraphs, with headings,
// lists and code fences.
type ragGen struct {
	next   map[string][]string // word → the words that follow it in the Go docs
	starts []string            // words that start sentences
	code   []string            // lines of code from the Go docs
}

func newRAGGen(goDocs []ragDoc) (*ragGen, error) {
	g := &ragGen{next: map[string][]string{}}
	for _, d := range goDocs {
		f, err := ingest.Detect(d.name, d.contentType, d.data)
		if err != nil {
			return nil, err
		}
		x, err := ingest.Extract(context.Background(), d.name, f, d.data)
		if err != nil {
			return nil, err
		}
		inCode := false
		for line := range strings.Lines(x.Text) {
			line = strings.TrimRight(line, "\n")
			if strings.HasPrefix(line, "```") {
				inCode = !inCode
				continue
			}
			if inCode {
				if strings.TrimSpace(line) != "" && len(line) < 100 {
					g.code = append(g.code, line)
				}
				continue
			}
			if strings.HasPrefix(line, "#") || strings.HasPrefix(line, "|") {
				continue
			}
			ws := strings.Fields(line)
			for i, w := range ws {
				if i > 0 {
					g.next[ws[i-1]] = append(g.next[ws[i-1]], w)
				}
				if w[0] >= 'A' && w[0] <= 'Z' && (i == 0 || strings.HasSuffix(ws[i-1], ".")) {
					g.starts = append(g.starts, w)
				}
			}
		}
	}
	if len(g.starts) == 0 || len(g.code) == 0 {
		return nil, fmt.Errorf("the Go docs gave no text to train the generator")
	}
	return g, nil
}

// zhWords are the Chinese vocabulary of the synthetic documents.
var zhWords = strings.Fields(`网关 数据库 连接 向量 检索 知识库 文档 分块 重叠 模型 推理 插件 进程 重启 配置 文件
	服务 客户端 请求 响应 流式 令牌 上下文 提示词 嵌入 稀疏 稠密 融合 排序 召回率 准确率 延迟 吞吐量 并发 队列
	超时 重试 退避 错误 日志 监控 指标 告警 部署 集群 节点 副本 负载 均衡 缓存 索引 查询 事务 备份 恢复 迁移
	版本 兼容 升级 回滚 密钥 权限 用户 会话 消息 历史 标题 段落 句子 标点 字符 编码 解码 压缩 内存 磁盘 网络
	端口 协议 接口 函数 变量 类型 结构 指针 切片 映射 通道 协程 调度 垃圾回收 编译器 链接器 汇编 运行时 标准库
	测试 基准 性能 分析 优化 瓶颈 瞬间 我们 他们 系统 需要 可以 应该 如果 因为 所以 但是 然后 已经 正在 没有
	每个 所有 一些 这个 那个 默认 最大 最小 自动 手动 重要 简单 复杂 快速 稳定 安全 可靠 返回 处理 保存 读取
	写入 删除 更新 创建 启动 停止 等待 检查 验证 计算 比较 选择 合并 拆分 上传 下载 解析 生成 翻译 总结 回答`)

var zhPunct = []string{"，", "，", "，", "；", "、"}

func (g *ragGen) english(r *rand.Rand, words int) string {
	var b strings.Builder
	w := g.starts[r.IntN(len(g.starts))]
	for i := 0; i < words; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(w)
		nx := g.next[w]
		if len(nx) == 0 || (i > words/2 && strings.HasSuffix(w, ".")) {
			if !strings.HasSuffix(w, ".") {
				b.WriteByte('.')
			}
			if i > words/2 {
				break
			}
			w = g.starts[r.IntN(len(g.starts))]
			continue
		}
		w = nx[r.IntN(len(nx))]
	}
	return b.String()
}

func (g *ragGen) chinese(r *rand.Rand, words int) string {
	var b strings.Builder
	for i := range words {
		// Zipf-like: small indices more often.
		k := int(math.Floor(math.Pow(r.Float64(), 2) * float64(len(zhWords))))
		b.WriteString(zhWords[k])
		if i > 0 && i < words-1 && r.IntN(6) == 0 {
			b.WriteString(zhPunct[r.IntN(len(zhPunct))])
		}
	}
	b.WriteString([]string{"。", "。", "！", "？"}[r.IntN(4)])
	return b.String()
}

// paragraph mixes languages: all English, all Chinese, or Chinese with English words.
func (g *ragGen) paragraph(r *rand.Rand) string {
	var parts []string
	n := 2 + r.IntN(5)
	switch r.IntN(3) {
	case 0:
		for range n {
			parts = append(parts, g.english(r, 10+r.IntN(25)))
		}
		return strings.Join(parts, " ")
	case 1:
		for range n {
			parts = append(parts, g.chinese(r, 8+r.IntN(20)))
		}
		return strings.Join(parts, "")
	default:
		for range n {
			if r.IntN(2) == 0 {
				parts = append(parts, g.chinese(r, 6+r.IntN(12)))
			} else {
				parts = append(parts, g.english(r, 6+r.IntN(12)))
			}
		}
		return strings.Join(parts, " ")
	}
}

// doc is synthetic document i (deterministic, about 256 KB, each different).
func (g *ragGen) doc(i int) ragDoc {
	r := rand.New(rand.NewPCG(uint64(i)+100, 42))
	var b strings.Builder
	fmt.Fprintf(&b, "# %s %d\n\n", g.chinese(r, 3), i)
	for sec := 1; b.Len() < 256<<10; sec++ {
		fmt.Fprintf(&b, "## %d. %s\n\n", sec, strings.TrimSuffix(g.english(r, 3+r.IntN(4)), "."))
		for range 2 + r.IntN(6) {
			switch k := r.IntN(10); {
			case k < 7:
				b.WriteString(g.paragraph(r))
			case k < 9:
				for range 2 + r.IntN(4) {
					if r.IntN(2) == 0 {
						fmt.Fprintf(&b, "- %s\n", g.chinese(r, 3+r.IntN(8)))
					} else {
						fmt.Fprintf(&b, "- %s\n", g.english(r, 4+r.IntN(10)))
					}
				}
			default:
				b.WriteString("```go\n")
				s := r.IntN(len(g.code))
				for _, l := range g.code[s:min(s+3+r.IntN(10), len(g.code))] {
					b.WriteString(l + "\n")
				}
				b.WriteString("```")
			}
			b.WriteString("\n\n")
		}
	}
	return ragDoc{name: fmt.Sprintf("synthetic-%04d.md", i), contentType: "text/markdown", data: []byte(b.String())}
}
