package rag

import "strings"

// A section is the text under one heading, up to the next heading: its heading path
// and its blocks (paragraphs and code fences), as byte ranges of the document text.
// The heading line itself is not part of the section; it is in the path.
type section struct {
	heading string
	// path is the heading path's elements (heading is them joined by headingSep),
	// and levels each one's heading level (0 for the document's title).
	path   []string
	levels []int
	// headStart is where the section's heading line starts (for a setext heading,
	// its title line); the text before the first heading has none: its body start.
	headStart int
	blocks    []block
}

// A block is a paragraph (blank-line separated) or, in Markdown, a fenced code block
// including its fence lines. start is at the first byte of its first line, end after
// the last byte of its last line (the newline excluded).
type block struct {
	start, end int
	code       bool
}

// headingSep joins the elements of a heading path.
const headingSep = " > "

// sections cuts doc.Text at headings: ATX headings ("# A" … "###### F") always,
// setext headings (a one-line paragraph underlined with === or ---) and code
// fences (``` or ~~~) only when doc.Markdown. A heading inside a code fence is code.
// Sections without blocks are left out.
func sections(doc Document) []section {
	text := doc.Text
	var (
		out    []section
		path   []headingLevel
		cur    = newSectionAt(doc.Title, path, 0)
		para   = -1 // index in cur.blocks of the open paragraph, or -1
		paraN  = 0  // lines in the open paragraph
		fence  string
		inCode bool
	)
	flush := func() {
		if len(cur.blocks) > 0 {
			out = append(out, cur)
		}
	}
	newSection := func(level int, title string, at int) {
		flush()
		for len(path) > 0 && path[len(path)-1].level >= level {
			path = path[:len(path)-1]
		}
		path = append(path, headingLevel{level, title})
		cur = newSectionAt(doc.Title, path, at)
		para, paraN = -1, 0
	}
	for start := 0; start < len(text); {
		end := strings.IndexByte(text[start:], '\n')
		next := len(text)
		if end < 0 {
			end = len(text)
		} else {
			end += start
			next = end + 1
		}
		line := text[start:end]
		switch {
		case inCode:
			cur.blocks[len(cur.blocks)-1].end = end
			if closesFence(line, fence) {
				inCode = false
			}
		case doc.Markdown && opensFence(line) != "":
			fence = opensFence(line)
			inCode = true
			cur.blocks = append(cur.blocks, block{start: start, end: end, code: true})
			para, paraN = -1, 0
		case isBlank(line):
			para, paraN = -1, 0
		default:
			if level, title, ok := atxHeading(line); ok {
				newSection(level, title, start)
				break
			}
			if doc.Markdown && para >= 0 && paraN == 1 {
				if level := setextUnderline(line); level > 0 {
					p := cur.blocks[para]
					if title := strings.TrimSpace(text[p.start:p.end]); !startsListOrQuote(title) {
						cur.blocks = cur.blocks[:para]
						newSection(level, title, p.start)
						break
					}
				}
			}
			if para >= 0 {
				cur.blocks[para].end = end
				paraN++
			} else {
				cur.blocks = append(cur.blocks, block{start: start, end: end})
				para, paraN = len(cur.blocks)-1, 1
			}
		}
		start = next
	}
	flush()
	return out
}

type headingLevel struct {
	level int
	title string
}

// newSectionAt is an empty section under title and path, its heading line at at.
func newSectionAt(title string, path []headingLevel, at int) section {
	parts, levels := headingPath(title, path)
	return section{heading: strings.Join(parts, headingSep), path: parts, levels: levels, headStart: at}
}

// start and end are where the section's text (headings left out) starts and ends.
func (s section) start() int { return s.blocks[0].start }
func (s section) end() int   { return s.blocks[len(s.blocks)-1].end }

// headingPath is the title and the headings, leaving out empty ones and a heading
// that repeats the element before it (a document whose first "# H1" is its title),
// with each one's level (0: the title).
func headingPath(title string, path []headingLevel) (parts []string, levels []int) {
	if title = strings.TrimSpace(title); title != "" {
		parts, levels = append(parts, title), append(levels, 0)
	}
	for _, h := range path {
		if h.title == "" || (len(parts) > 0 && parts[len(parts)-1] == h.title) {
			continue
		}
		parts, levels = append(parts, h.title), append(levels, h.level)
	}
	return parts, levels
}

// indent3 strips up to three leading spaces; ok is false for more (an indented code
// line in Markdown).
func indent3(line string) (string, bool) {
	for i := 0; i < 4; i++ {
		if i == len(line) || line[i] != ' ' {
			return line[i:], true
		}
	}
	return line, false
}

// atxHeading recognises "## Title ##": 1 to 6 '#', then a space, a tab or the end of
// the line; the closing run of '#' is optional.
func atxHeading(line string) (level int, title string, ok bool) {
	s, ok := indent3(line)
	if !ok {
		return 0, "", false
	}
	for level < len(s) && s[level] == '#' {
		level++
	}
	if level == 0 || level > 6 || (level < len(s) && s[level] != ' ' && s[level] != '\t') {
		return 0, "", false
	}
	title = strings.TrimSpace(s[level:])
	if t := strings.TrimRight(title, "#"); t == "" || strings.HasSuffix(t, " ") || strings.HasSuffix(t, "\t") {
		title = strings.TrimSpace(t)
	}
	return level, title, true
}

// setextUnderline returns 1 for a line of '=', 2 for a line of '-', 0 otherwise.
func setextUnderline(line string) int {
	s, ok := indent3(line)
	s = strings.TrimRight(s, " \t")
	if !ok || s == "" {
		return 0
	}
	if strings.Trim(s, "=") == "" {
		return 1
	}
	if strings.Trim(s, "-") == "" {
		return 2
	}
	return 0
}

// startsListOrQuote reports whether a paragraph line is a list item or a quote,
// which a following "---" does not turn into a heading.
func startsListOrQuote(s string) bool {
	if s == "" {
		return false
	}
	switch s[0] {
	case '-', '*', '+':
		return len(s) == 1 || s[1] == ' '
	case '>':
		return true
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i > 0 && i < len(s) && (s[i] == '.' || s[i] == ')')
}

// opensFence returns the fence ("```", "~~~~", …) a line opens, or "".
func opensFence(line string) string {
	s, ok := indent3(line)
	if !ok || len(s) < 3 || (s[0] != '`' && s[0] != '~') {
		return ""
	}
	n := 0
	for n < len(s) && s[n] == s[0] {
		n++
	}
	if n < 3 || (s[0] == '`' && strings.IndexByte(s[n:], '`') >= 0) {
		return ""
	}
	return s[:n]
}

// closesFence reports whether line closes a code block opened with fence.
func closesFence(line, fence string) bool {
	s, ok := indent3(line)
	if !ok || !strings.HasPrefix(s, fence) {
		return false
	}
	return strings.Trim(s, fence[:1]+" \t") == ""
}

func isBlank(line string) bool { return strings.TrimLeft(line, " \t") == "" }
