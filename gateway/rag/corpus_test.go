package rag

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// mixedCorpus returns a deterministic Markdown document of about size bytes mixing
// Chinese, English and Japanese prose, lists, code fences, long paragraphs and
// unpunctuated runs, and the same document without its heading lines (what the
// chunks' own texts must reproduce, up to white space).
func mixedCorpus(size int) (doc, bodies string) {
	r := rand.New(rand.NewPCG(1, 2))
	zh := []string{
		"网关返回503错误时，客户端应当按指数退避重试。",
		"他说：“今天的部署很顺利。”",
		"向量检索的召回率取决于分块的大小和重叠！",
		"你确定要删除这个知识库吗？",
		"配置文件位于/etc/ragway/config.yaml；修改后需要重启服务。",
		"中文没有空格，所以我们用字符二元组来建立索引……",
		"「引号里的句子。」后面还有内容。",
		"数据库连接池的大小默认为10，最大为100。",
	}
	en := []string{
		"The gateway speaks the OpenAI API, e.g. chat completions and embeddings.",
		"Pi is roughly 3.14 and the ratio is 1.5x in v2.0.1 builds.",
		"The U.S. team reviewed it with Dr. Smith yesterday!",
		"Does it stream tokens over WebSockets?",
		"Chunks keep their heading path (for context) and a small overlap.",
		"Hybrid search fuses dense and sparse results by reciprocal rank fusion.",
	}
	ja := []string{"東京タワーに行きました。", "データベースの接続が切れました！", "本当ですか？"}
	var d, b strings.Builder
	both := func(s string) { d.WriteString(s); b.WriteString(s) }
	para := func(pool []string, n int, sep string) {
		for i := 0; i < n; i++ {
			if i > 0 {
				both(sep)
			}
			both(pool[r.IntN(len(pool))])
		}
		both("\n\n")
	}
	for sec := 0; d.Len() < size; sec++ {
		level := 1 + r.IntN(3)
		if sec%7 == 3 {
			d.WriteString(fmt.Sprintf("第%d节 设置\n%s\n\n", sec, strings.Repeat("=-"[level%2:level%2+1], 8)))
		} else {
			d.WriteString(fmt.Sprintf("%s 第%d节 Section %d\n\n", strings.Repeat("#", level), sec, sec))
		}
		for p := 0; p < 1+r.IntN(6); p++ {
			switch r.IntN(10) {
			case 0, 1, 2:
				para(zh, 1+r.IntN(8), "")
			case 3:
				para(zh, 60+r.IntN(60), "") // long Chinese paragraph
			case 4, 5:
				para(en, 1+r.IntN(6), " ")
			case 6:
				para(en, 40+r.IntN(40), " ") // long English paragraph
			case 7:
				para(ja, 2+r.IntN(10), "")
			case 8:
				both("- 第一项：配置网关\n- second item, with a comma\n- 第三项\n\n")
			case 9:
				switch r.IntN(4) {
				case 0:
					both("```go\nfunc main() {\n\tfmt.Println(\"# not a heading\")\n\n\treturn\n}\n```\n\n")
				case 1:
					both("```\n" + strings.Repeat("x := compute(a, b) // 计算结果\n", 150) + "```\n\n")
				case 2:
					both(strings.Repeat("没有标点的超长句子", 120) + "\n\n")
				default:
					both(strings.Repeat("unpunctuated words flow on ", 150) + strings.Repeat("z", 900) + "\n\n")
				}
			}
		}
	}
	return d.String(), b.String()
}
