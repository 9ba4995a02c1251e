package ingest

import (
	"errors"
	"strings"
	"testing"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		name        string
		filename    string
		contentType string
		head        string
		want        Format
		wantErr     error
		errHas      string
	}{
		{name: "txt", filename: "a.txt", want: Text},
		{name: "text upper case", filename: "NOTES.TEXT", want: Text},
		{name: "md", filename: "dir/readme.md", want: Markdown},
		{name: "markdown", filename: "x.markdown", want: Markdown},
		{name: "mdx", filename: "x.mdx", want: Markdown},
		{name: "html", filename: "x.html", want: HTML},
		{name: "htm", filename: "x.htm", want: HTML},
		{name: "xhtml", filename: "x.xhtml", want: HTML},
		{name: "pdf", filename: "x.pdf", want: PDF},
		{name: "extension beats content type", filename: "x.md", contentType: "text/plain", want: Markdown},
		{name: "content type plain", filename: "README", contentType: "text/plain", want: Text},
		{name: "content type markdown", filename: "notes", contentType: "text/markdown; charset=UTF-8", want: Markdown},
		{name: "content type html", filename: "page", contentType: "text/html; charset=utf-8", want: HTML},
		{name: "content type xhtml", filename: "page", contentType: "application/xhtml+xml", want: HTML},
		{name: "content type pdf", filename: "blob", contentType: "application/pdf", want: PDF},
		{name: "us-ascii accepted", filename: "a.txt", contentType: "text/plain; charset=us-ascii", want: Text},
		{name: "quoted utf8 accepted", filename: "a.txt", contentType: `text/plain; charset="utf8"`, want: Text},
		{name: "latin1 refused", filename: "a.txt", contentType: "text/plain; charset=ISO-8859-1", wantErr: ErrUnsupportedFormat, errHas: "ISO-8859-1"},
		{name: "gbk html refused", filename: "", contentType: "text/html; charset=gbk", wantErr: ErrUnsupportedFormat, errHas: `"gbk"`},
		{name: "charset ignored for pdf", filename: "a.pdf", contentType: "application/pdf; charset=binary", want: PDF},
		{name: "sniff pdf", filename: "upload", contentType: "application/octet-stream", head: "%PDF-1.7\n%\xe2\xe3", want: PDF},
		{name: "sniff doctype", filename: "upload", head: "\xEF\xBB\xBF \n<!DOCTYPE html><html>", want: HTML},
		{name: "sniff html", filename: "upload", head: "<HTML lang=zh>", want: HTML},
		{name: "unknown", filename: "photo.jpg", contentType: "image/jpeg", head: "\xff\xd8\xff", wantErr: ErrUnsupportedFormat, errHas: `"photo.jpg" (Content-Type "image/jpeg")`},
		{name: "unknown text without hints", filename: "README", head: "hello", wantErr: ErrUnsupportedFormat, errHas: "README"},
		{name: "bad content type", filename: "x", contentType: "text/", wantErr: ErrUnsupportedFormat, errHas: "Content-Type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Detect(tt.filename, tt.contentType, []byte(tt.head))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("Detect = %q, %v; want %v containing %q", got, err, tt.wantErr, tt.errHas)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Detect = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
