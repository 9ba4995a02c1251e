package gguf

import (
	"fmt"
	"strings"
)

// TokenType is a tokenizer token type (tokenizer.ggml.token_type, enum llama_token_type).
type TokenType int32

// Token types.
const (
	TokenNormal      TokenType = 1
	TokenUnknown     TokenType = 2
	TokenControl     TokenType = 3
	TokenUserDefined TokenType = 4
	TokenUnused      TokenType = 5
	TokenByte        TokenType = 6
)

// SpaceMarker is SentencePiece's visible space, U+2581: an SPM tokenizer replaces
// spaces with it (and prefixes the text with one) before looking up pieces.
const SpaceMarker = "\u2581"

// ChatMLTemplate is the Jinja chat template the generated models carry
// (tokenizer.chat_template). llama.cpp recognises it as ChatML.
const ChatMLTemplate = "{% for message in messages %}" +
	"{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}" +
	"{% endfor %}" +
	"{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// RerankTemplate is the rerank prompt the generated rerankers carry
// (tokenizer.chat_template.rerank), in the manner of Qwen3-Reranker's (shorter):
// llama.cpp's server, and the llamacpp plugin, put the query in place of {query}
// and the document in place of {document}; the ChatML tokens in it are special
// tokens.
const RerankTemplate = "<|im_start|>user\nQuery: {query}\nDocument: {document}<|im_end|>\n<|im_start|>assistant\n"

// Vocab is an SPM (tokenizer.ggml.model "llama") vocabulary.
type Vocab struct {
	Tokens []string
	Scores []float32
	Types  []TokenType

	// Token ids of the special tokens.
	UNK, BOS, EOS, IMStart, IMEnd int
}

// Id returns the id of the token whose text is s.
func (v *Vocab) Id(s string) (int, bool) {
	for i, t := range v.Tokens {
		if t == s {
			return i, true
		}
	}
	return 0, false
}

// words are merged into pieces "▁word" (with every prefix "▁w", "▁wo", ... so that
// SPM's bigram merges can reach them); subwords merge inside words. Ordered
// roughly by frequency: earlier pieces get higher scores.
const words = `
the of and to a in is it you that he was for on are with as I his they be at one
have this from or had by hot but some what there we can out other were all your when
up use word how said an each she which do their time if will way about many then them
would write like so these her long make thing see him two has look more day could go
come did my sound no most number who over know water than call first people may down
side been now find any new work part take get place made live where after back little
only round man year came show every good me give our under name very through just form
much great think say help low line before turn cause same mean differ move right boy
old too does tell sentence set three want air well also play small end put home read
hand port large spell add even land here must big high such follow act why ask men
change went light kind off need house picture try us again animal point mother world
near build self earth father head stand own page should country found answer school
grow study still learn plant cover food sun four thought let keep eye never last door
between city tree cross since hard start might story saw far sea draw left late run
while press close night real life few stop open seem together next white children begin
got walk example ease paper often always music those both mark book letter until mile
river car feet care second group carry took rain eat room friend began idea fish
mountain north once base hear horse cut sure watch color face wood main enough plain
girl usual young ready above ever red list though feel talk bird soon body dog family
direct pose leave song measure state product black short numeral class wind question
happen complete ship area half rock order fire south problem piece told knew pass farm
top whole king size heard best hour better true during hundred am remember step early
hold west ground interest reach fast five sing listen six table travel less morning ten
simple several vowel toward war lay against pattern slow center love person money serve
appear road map science rule govern pull cold notice voice fall power town fine certain
fly unit lead cry dark machine note wait plan figure star box noun field rest correct
able pound done beauty drive stood contain front teach week final gave green oh quick
develop sleep warm free minute strong special mind behind clear tail produce fact street
inch lot nothing course stay wheel full force blue object decide surface deep moon
island foot yet busy test record boat common gold possible plane age dry wonder laugh
thousand ago ran check game shape yes cool miss brought heat snow bed bring sit perhaps
fill east weight language among
Hello hello Hi hi world World The This That What How Why When Where Who It In A An
And But If You We They He She Yes No Please Thank thanks Thanks OK
assistant user system model models token tokens chat context document documents source
sources knowledge base search query answer question retrieval embedding vector gateway
server client request response stream plugin backend ragway llama data file text
`

// subwords are pieces without the space marker, merged inside words.
const subwords = `ing ed er es ly tion s ment ness able ous ive al ent ers est`

// ChatVocab returns the vocabulary of the generated models: <unk>, <s>, </s>, the
// 256 byte tokens <0x00>..<0xFF> (byte fallback), the ChatML tokens <|im_start|>
// and <|im_end|>, every printable ASCII character and the space marker, and
// merged English word pieces, each as "▁word" and "word" (with the prefixes they
// merge through), so that English text tokenizes into far fewer tokens than
// bytes. Non-ASCII text falls back to byte tokens.
func ChatVocab() *Vocab {
	v, _ := chatVocab()
	return v
}

// chatVocab also returns which tokens are whole word pieces (not only a prefix
// merged through on the way to one).
func chatVocab() (*Vocab, map[int]bool) {
	v := &Vocab{}
	index := map[string]int{}
	add := func(s string, score float32, t TokenType) int {
		v.Tokens = append(v.Tokens, s)
		v.Scores = append(v.Scores, score)
		v.Types = append(v.Types, t)
		index[s] = len(v.Tokens) - 1
		return len(v.Tokens) - 1
	}
	v.UNK = add("<unk>", 0, TokenUnknown)
	v.BOS = add("<s>", 0, TokenControl)
	add("</s>", 0, TokenControl)
	for b := 0; b < 256; b++ {
		add(fmt.Sprintf("<0x%02X>", b), 0, TokenByte)
	}
	v.IMStart = add("<|im_start|>", 0, TokenControl)
	v.IMEnd = add("<|im_end|>", 0, TokenControl)
	v.EOS = v.IMEnd // a chat model's turn ends with <|im_end|>

	// SPM scores are log-probabilities: the tokenizer merges the highest-scoring
	// pair first. Single characters never come out of a merge, so theirs only rank.
	rank := float32(0)
	next := func() float32 { rank--; return rank }
	whole := map[int]bool{}
	addPiece := func(p string) {
		// Every prefix of two or more characters, so the merges can reach p.
		r := []rune(p)
		for n := 2; n <= len(r); n++ {
			if _, ok := index[string(r[:n])]; !ok {
				add(string(r[:n]), next(), TokenNormal)
			}
		}
		if len(r) >= 2 {
			whole[index[p]] = true
		}
	}
	for _, w := range strings.Fields(words) {
		addPiece(SpaceMarker + w)
		addPiece(w)
	}
	for _, w := range strings.Fields(subwords) {
		addPiece(w)
	}
	add(SpaceMarker, next(), TokenNormal)
	for c := byte('!'); c <= '~'; c++ {
		if _, ok := index[string(rune(c))]; !ok {
			add(string(rune(c)), next(), TokenNormal)
		}
	}
	return v, whole
}
