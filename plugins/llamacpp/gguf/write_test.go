package gguf

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
)

// rowValue is the value a test tensor holds at (row, column).
func rowValue(r, i int) float32 { return float32(r*1000+i) / 4096 }

func testTensor(name string, typ Type, shape ...uint64) Tensor {
	return Tensor{Name: name, Shape: shape, Type: typ, Fill: func(r int, dst []float32) {
		for i := range dst {
			dst[i] = rowValue(r, i)
		}
	}}
}

// readTensor decodes a tensor of a written file back into float32 rows.
func readTensor(t *testing.T, data []byte, h *Header, ti TensorInfo) [][]float32 {
	t.Helper()
	n := int(ti.Shape[0])
	rows := 1
	for _, d := range ti.Shape[1:] {
		rows *= int(d)
	}
	rowSize, err := ti.Type.RowSize(n)
	if err != nil {
		t.Fatal(err)
	}
	start := h.DataOffset + int64(ti.Offset)
	if start%int64(h.Alignment) != 0 {
		t.Errorf("tensor %s starts at %d, not aligned to %d", ti.Name, start, h.Alignment)
	}
	out := make([][]float32, rows)
	for r := range out {
		out[r] = make([]float32, n)
		off := start + int64(r)*rowSize
		if off+rowSize > int64(len(data)) {
			t.Fatalf("tensor %s row %d beyond the end of the file", ti.Name, r)
		}
		if err := DecodeRow(ti.Type, out[r], data[off:off+rowSize]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestWriteReadRoundTrip(t *testing.T) {
	meta := []KV{
		{"general.architecture", "test"},
		{"u8", uint8(200)}, {"i8", int8(-100)}, {"u16", uint16(60000)}, {"i16", int16(-30000)},
		{"u32", uint32(4000000000)}, {"i32", int32(-2000000000)},
		{"u64", uint64(1) << 60}, {"i64", int64(-1) << 60},
		{"f32", float32(1.5)}, {"f64", math.Pi}, {"yes", true}, {"no", false},
		{"s", "héllo ▁world"}, {"empty", ""},
		{"a.u8", []uint8{1, 2}}, {"a.i8", []int8{-1}}, {"a.u16", []uint16{7}}, {"a.i16", []int16{-7}},
		{"a.u32", []uint32{1, 2, 3}}, {"a.i32", []int32{-1, 6}}, {"a.u64", []uint64{9}}, {"a.i64", []int64{-9}},
		{"a.f32", []float32{0.5, -0.25}}, {"a.f64", []float64{1e300}}, {"a.bool", []bool{true, false}},
		{"a.str", []string{"<s>", "", "▁the"}}, {"a.empty", []string{}},
	}
	tensors := []Tensor{
		testTensor("vec", TypeF32, 5),
		testTensor("f16", TypeF16, 3, 2),
		testTensor("q8", TypeQ8_0, 64, 3),
		testTensor("cube", TypeF32, 2, 2, 2),
	}
	for _, align := range []int{0, 64} {
		f := &File{Metadata: meta, Tensors: tensors, Alignment: align}
		var buf bytes.Buffer
		n, err := f.WriteTo(&buf)
		if err != nil {
			t.Fatal(err)
		}
		size, err := f.Size()
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(buf.Len()) || size != n {
			t.Fatalf("align %d: WriteTo reported %d, wrote %d, Size says %d", align, n, buf.Len(), size)
		}
		h, err := Read(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if h.Version != Version {
			t.Errorf("version %d", h.Version)
		}
		if !reflect.DeepEqual(h.Metadata, meta) {
			t.Errorf("metadata round trip:\n got %#v\nwant %#v", h.Metadata, meta)
		}
		if len(h.Tensors) != len(tensors) {
			t.Fatalf("%d tensors, want %d", len(h.Tensors), len(tensors))
		}
		for i, ti := range h.Tensors {
			want := tensors[i]
			if ti.Name != want.Name || ti.Type != want.Type || !reflect.DeepEqual(ti.Shape, want.Shape) {
				t.Errorf("tensor %d = %+v, want %s %v %v", i, ti, want.Name, want.Shape, want.Type)
			}
			tol := map[Type]float64{TypeF32: 0, TypeF16: 1e-3, TypeQ8_0: 0.02}[ti.Type]
			for r, row := range readTensor(t, buf.Bytes(), h, ti) {
				for c, v := range row {
					w := rowValue(r, c)
					if math.Abs(float64(v-w)) > tol*math.Max(1, math.Abs(float64(w))) {
						t.Fatalf("tensor %s[%d][%d] = %g, want %g", ti.Name, r, c, v, w)
					}
				}
			}
		}
	}
}

func TestWriteErrors(t *testing.T) {
	ok := func() *File {
		return &File{Metadata: []KV{{"k", uint32(1)}}, Tensors: []Tensor{testTensor("t", TypeF32, 4)}}
	}
	tests := []struct {
		name   string
		change func(f *File)
		want   string
	}{
		{"duplicate key", func(f *File) { f.Metadata = append(f.Metadata, KV{"k", "again"}) }, "duplicate metadata key"},
		{"duplicate tensor", func(f *File) { f.Tensors = append(f.Tensors, testTensor("t", TypeF32, 4)) }, "duplicate tensor"},
		{"unsupported value", func(f *File) { f.Metadata[0].Value = 3 }, "unsupported value type int"},
		{"no shape", func(f *File) { f.Tensors[0].Shape = nil }, "0 dimensions"},
		{"five dimensions", func(f *File) { f.Tensors[0].Shape = []uint64{1, 1, 1, 1, 1} }, "5 dimensions"},
		{"zero dimension", func(f *File) { f.Tensors[0].Shape = []uint64{4, 0} }, "dimension 0"},
		{"q8_0 partial block", func(f *File) { f.Tensors[0].Type = TypeQ8_0 }, "not a multiple of 32"},
		{"no fill", func(f *File) { f.Tensors[0].Fill = nil }, "no Fill"},
		{"alignment not a power of two", func(f *File) { f.Alignment = 24 }, "not a power of two"},
		{"alignment of the wrong type", func(f *File) { f.Metadata = append(f.Metadata, KV{"general.alignment", 32}) }, "must be a uint32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := ok()
			tt.change(f)
			_, err := f.WriteTo(io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("WriteTo error = %v, want one containing %q", err, tt.want)
			}
		})
	}
	if _, err := ok().WriteTo(io.Discard); err != nil {
		t.Errorf("the unchanged file fails: %v", err)
	}
}

func TestReadErrors(t *testing.T) {
	f := &File{Metadata: []KV{{"general.name", "x"}, {"a", []string{"p", "q"}}}, Tensors: []Tensor{testTensor("t", TypeF32, 4)}}
	var hb bytes.Buffer
	if err := f.writeHeader(&hb, []uint64{0}); err != nil {
		t.Fatal(err)
	}
	header := hb.Bytes() // without padding and data
	tests := []struct {
		name string
		in   []byte
		want error  // errors.Is target, or nil
		msg  string // substring, when want is nil
	}{
		{"empty", nil, io.ErrUnexpectedEOF, ""},
		{"not gguf", []byte("PK\x03\x04 a zip file"), ErrNotGGUF, ""},
		{"version 1", []byte("GGUF\x01\x00\x00\x00"), nil, "unsupported GGUF version 1"},
		{"truncated in metadata", header[:40], io.ErrUnexpectedEOF, ""},
		{"truncated in tensor info", header[:len(header)-3], io.ErrUnexpectedEOF, ""},
		{"huge counts", append([]byte("GGUF\x03\x00\x00\x00"), bytes.Repeat([]byte{0xff}, 16)...), nil, "implausible counts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Read(bytes.NewReader(tt.in))
			switch {
			case err == nil:
				t.Fatal("Read succeeded")
			case tt.want != nil && !errors.Is(err, tt.want):
				t.Errorf("error = %v, want %v", err, tt.want)
			case tt.want == nil && !strings.Contains(err.Error(), tt.msg):
				t.Errorf("error = %v, want one containing %q", err, tt.msg)
			}
		})
	}
	if _, err := Read(bytes.NewReader(header)); err != nil {
		t.Errorf("the header alone should parse: %v", err)
	}
}

// WriteTo asks for every row exactly once, in order, with a buffer of one row.
func TestWriteStreamsRows(t *testing.T) {
	var calls []int
	tensor := Tensor{Name: "big", Shape: []uint64{32, 1000}, Type: TypeQ8_0, Fill: func(r int, dst []float32) {
		if len(dst) != 32 {
			t.Fatalf("row buffer of %d values", len(dst))
		}
		calls = append(calls, r)
	}}
	f := &File{Tensors: []Tensor{tensor}}
	if _, err := f.WriteTo(io.Discard); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1000 {
		t.Fatalf("%d Fill calls, want 1000", len(calls))
	}
	for i, r := range calls {
		if r != i {
			t.Fatalf("call %d filled row %d", i, r)
		}
	}
}
