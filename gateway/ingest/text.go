package ingest

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// extractText checks that a plain-text or Markdown document is UTF-8 text and takes
// Markdown's title from its first level-1 heading.
func extractText(name string, f Format, data []byte) (Extracted, error) {
	text, err := checkText(name, data)
	if err != nil {
		return Extracted{}, err
	}
	x := Extracted{Text: text, Markdown: f == Markdown}
	if x.Markdown {
		x.Title = markdownTitle(text)
	}
	return x, nil
}

// checkText returns data as a string without its UTF-8 byte-order mark, or
// ErrInvalidText if data is UTF-16, has NUL bytes or is not valid UTF-8. Offsets in
// messages count from the start of data, BOM included.
func checkText(name string, data []byte) (string, error) {
	if bytes.HasPrefix(data, []byte{0xFF, 0xFE}) || bytes.HasPrefix(data, []byte{0xFE, 0xFF}) {
		return "", fmt.Errorf("%w: %q is UTF-16 (byte-order mark); only UTF-8 is accepted", ErrInvalidText, name)
	}
	bom := 0
	if bytes.HasPrefix(data, utf8BOM) {
		bom = len(utf8BOM)
	}
	body := data[bom:]
	if i := bytes.IndexByte(body, 0); i >= 0 {
		return "", fmt.Errorf("%w: %q is binary (NUL byte at offset %d), not text", ErrInvalidText, name, bom+i)
	}
	if !utf8.Valid(body) {
		return "", fmt.Errorf("%w: %q is not valid UTF-8: invalid byte sequence at offset %d", ErrInvalidText, name, bom+invalidUTF8At(body))
	}
	return string(body), nil
}

// invalidUTF8At returns the offset of the first invalid UTF-8 sequence in data, or -1.
func invalidUTF8At(data []byte) int {
	for i := 0; i < len(data); {
		if data[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

// markdownTitle returns the text of the first ATX level-1 heading ("# Title") outside
// code fences, or "".
func markdownTitle(text string) string {
	fence := ""
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		trimmed := strings.TrimLeft(line, " ")
		if len(line)-len(trimmed) > 3 {
			continue // indented code
		}
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) && strings.TrimRight(trimmed, fence[:1]+" \t") == "" {
				fence = ""
			}
			continue
		}
		if f := fenceOf(trimmed); f != "" {
			fence = f
			continue
		}
		rest, ok := strings.CutPrefix(trimmed, "#")
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '\t') {
			continue
		}
		title := strings.TrimSpace(rest)
		// A closing sequence of #s, preceded by a space, is not part of the title.
		if t := strings.TrimRight(title, "#"); t != title && (t == "" || strings.HasSuffix(t, " ") || strings.HasSuffix(t, "\t")) {
			title = strings.TrimSpace(t)
		}
		if title != "" {
			return title
		}
	}
	return ""
}

// fenceOf returns the opening code fence (three or more ` or ~) line starts with, or "".
func fenceOf(line string) string {
	if line == "" || (line[0] != '`' && line[0] != '~') {
		return ""
	}
	n := len(line) - len(strings.TrimLeft(line, line[:1]))
	if n < 3 {
		return ""
	}
	return line[:n]
}
