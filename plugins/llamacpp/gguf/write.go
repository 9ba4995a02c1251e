package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
)

// A Tensor is one tensor of a [File] to be written. Its data is produced row by
// row when the file is written, so writing needs memory for one row, not the tensor.
type Tensor struct {
	Name string
	// Shape in ggml order: Shape[0] is the row length (see [TensorInfo.Shape]).
	Shape []uint64
	Type  Type
	// Fill writes the values of row r (0 ≤ r < Rows()) into dst, len(dst) = Shape[0].
	// It is called once per row, in order, on every write; it must depend on r
	// only, so that every write of the file gives the same bytes.
	Fill func(r int, dst []float32)
}

// Rows returns the number of rows: the product of Shape[1:].
func (t *Tensor) Rows() int {
	n := 1
	for _, d := range t.Shape[1:] {
		n *= int(d)
	}
	return n
}

// Size returns the size in bytes of the tensor's data, without padding.
func (t *Tensor) Size() (int64, error) {
	if len(t.Shape) == 0 || len(t.Shape) > 4 {
		return 0, fmt.Errorf("gguf: tensor %s has %d dimensions, want 1 to 4", t.Name, len(t.Shape))
	}
	for _, d := range t.Shape {
		if d == 0 || d > math.MaxInt32 {
			return 0, fmt.Errorf("gguf: tensor %s has dimension %d", t.Name, d)
		}
	}
	row, err := t.Type.RowSize(int(t.Shape[0]))
	if err != nil {
		return 0, fmt.Errorf("tensor %s: %w", t.Name, err)
	}
	return row * int64(t.Rows()), nil
}

// File is a GGUF file to be written: metadata, then tensor descriptions, then the
// tensors' data, each aligned to Alignment bytes.
type File struct {
	Metadata []KV
	Tensors  []Tensor
	// Alignment of the data section and of every tensor in it; 0 means the value of
	// a general.alignment entry, or DefaultAlignment. When Metadata has no
	// general.alignment and Alignment is not the default, write one yourself.
	Alignment int
}

func (f *File) alignment() (int, error) {
	a := f.Alignment
	if a == 0 {
		a = DefaultAlignment
		for _, kv := range f.Metadata {
			if kv.Key == "general.alignment" {
				v, ok := kv.Value.(uint32)
				if !ok {
					return 0, fmt.Errorf("gguf: general.alignment must be a uint32, is %T", kv.Value)
				}
				a = int(v)
			}
		}
	}
	if a <= 0 || a&(a-1) != 0 {
		return 0, fmt.Errorf("gguf: alignment %d is not a power of two", a)
	}
	return a, nil
}

// layout checks the file and returns the alignment, the padded data offset of
// every tensor and the total size of the data section.
func (f *File) layout() (align int, offsets []uint64, dataSize int64, err error) {
	align, err = f.alignment()
	if err != nil {
		return 0, nil, 0, err
	}
	keys := make(map[string]bool, len(f.Metadata))
	for _, kv := range f.Metadata {
		if keys[kv.Key] {
			return 0, nil, 0, fmt.Errorf("gguf: duplicate metadata key %q", kv.Key)
		}
		keys[kv.Key] = true
	}
	names := make(map[string]bool, len(f.Tensors))
	offsets = make([]uint64, len(f.Tensors))
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if names[t.Name] {
			return 0, nil, 0, fmt.Errorf("gguf: duplicate tensor %q", t.Name)
		}
		names[t.Name] = true
		if t.Fill == nil {
			return 0, nil, 0, fmt.Errorf("gguf: tensor %s has no Fill", t.Name)
		}
		size, err := t.Size()
		if err != nil {
			return 0, nil, 0, err
		}
		offsets[i] = uint64(dataSize)
		dataSize += pad(size, align)
	}
	return align, offsets, dataSize, nil
}

func pad(n int64, align int) int64 {
	return (n + int64(align) - 1) / int64(align) * int64(align)
}

// Size returns the number of bytes WriteTo writes.
func (f *File) Size() (int64, error) {
	align, offsets, dataSize, err := f.layout()
	if err != nil {
		return 0, err
	}
	cw := &countingWriter{w: io.Discard}
	if err := f.writeHeader(cw, offsets); err != nil {
		return 0, err
	}
	return pad(cw.n, align) + dataSize, nil
}

// WriteTo writes the file to w. It buffers its writes itself.
func (f *File) WriteTo(w io.Writer) (int64, error) {
	align, offsets, _, err := f.layout()
	if err != nil {
		return 0, err
	}
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 1<<20)
	hc := &countingWriter{w: bw}
	if err := f.writeHeader(hc, offsets); err != nil {
		return cw.n, err
	}
	written := hc.n
	written, err = writePadding(bw, written, align)
	if err != nil {
		return cw.n, err
	}
	var vals []float32
	var enc []byte
	for i := range f.Tensors {
		t := &f.Tensors[i]
		n := int(t.Shape[0])
		rowSize, _ := t.Type.RowSize(n) // checked by layout
		if cap(vals) < n {
			vals = make([]float32, n)
		}
		if int64(cap(enc)) < rowSize {
			enc = make([]byte, rowSize)
		}
		vals, enc = vals[:n], enc[:rowSize]
		for r := 0; r < t.Rows(); r++ {
			clear(vals)
			t.Fill(r, vals)
			if err := EncodeRow(t.Type, enc, vals); err != nil {
				return cw.n, fmt.Errorf("tensor %s row %d: %w", t.Name, r, err)
			}
			if _, err := bw.Write(enc); err != nil {
				return cw.n, err
			}
			written += rowSize
		}
		if written, err = writePadding(bw, written, align); err != nil {
			return cw.n, err
		}
	}
	if err := bw.Flush(); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

// WriteFile writes the file to path through a temporary file in the same
// directory, renamed into place when complete: an interrupted write never leaves
// a partial file at path.
func (f *File) WriteFile(path string) (err error) {
	if _, _, _, err := f.layout(); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := f.WriteTo(tmp); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func writePadding(w io.Writer, written int64, align int) (int64, error) {
	var zeros [256]byte
	for n := pad(written, align) - written; n > 0; {
		k := min(n, int64(len(zeros)))
		if _, err := w.Write(zeros[:k]); err != nil {
			return written, err
		}
		written += k
		n -= k
	}
	return written, nil
}

func (f *File) writeHeader(w io.Writer, offsets []uint64) error {
	e := &encoder{w: w}
	e.raw([]byte(Magic))
	e.u32(Version)
	e.u64(uint64(len(f.Tensors)))
	e.u64(uint64(len(f.Metadata)))
	for _, kv := range f.Metadata {
		e.str(kv.Key)
		if err := e.value(kv.Value); err != nil {
			return fmt.Errorf("gguf: metadata %s: %w", kv.Key, err)
		}
	}
	for i, t := range f.Tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Shape)))
		for _, d := range t.Shape {
			e.u64(d)
		}
		e.u32(uint32(t.Type))
		e.u64(offsets[i])
	}
	return e.err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// encoder writes little-endian GGUF values; the first error sticks.
type encoder struct {
	w   io.Writer
	err error
	buf [8]byte
}

func (e *encoder) raw(p []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(p)
	}
}

func (e *encoder) u8(v uint8) { e.buf[0] = v; e.raw(e.buf[:1]) }
func (e *encoder) u16(v uint16) {
	binary.LittleEndian.PutUint16(e.buf[:], v)
	e.raw(e.buf[:2])
}
func (e *encoder) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.buf[:], v)
	e.raw(e.buf[:4])
}
func (e *encoder) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.buf[:], v)
	e.raw(e.buf[:8])
}
func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err == nil {
		_, e.err = io.WriteString(e.w, s)
	}
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// value writes the type tag and the value.
func (e *encoder) value(v any) error {
	switch v := v.(type) {
	case uint8:
		e.u32(uint32(valueUint8))
		e.u8(v)
	case int8:
		e.u32(uint32(valueInt8))
		e.u8(uint8(v))
	case uint16:
		e.u32(uint32(valueUint16))
		e.u16(v)
	case int16:
		e.u32(uint32(valueInt16))
		e.u16(uint16(v))
	case uint32:
		e.u32(uint32(valueUint32))
		e.u32(v)
	case int32:
		e.u32(uint32(valueInt32))
		e.u32(uint32(v))
	case uint64:
		e.u32(uint32(valueUint64))
		e.u64(v)
	case int64:
		e.u32(uint32(valueInt64))
		e.u64(uint64(v))
	case float32:
		e.u32(uint32(valueFloat32))
		e.u32(math.Float32bits(v))
	case float64:
		e.u32(uint32(valueFloat64))
		e.u64(math.Float64bits(v))
	case bool:
		e.u32(uint32(valueBool))
		e.u8(boolByte(v))
	case string:
		e.u32(uint32(valueString))
		e.str(v)
	case []uint8:
		array(e, valueUint8, v, e.u8)
	case []int8:
		array(e, valueInt8, v, func(x int8) { e.u8(uint8(x)) })
	case []uint16:
		array(e, valueUint16, v, e.u16)
	case []int16:
		array(e, valueInt16, v, func(x int16) { e.u16(uint16(x)) })
	case []uint32:
		array(e, valueUint32, v, e.u32)
	case []int32:
		array(e, valueInt32, v, func(x int32) { e.u32(uint32(x)) })
	case []uint64:
		array(e, valueUint64, v, e.u64)
	case []int64:
		array(e, valueInt64, v, func(x int64) { e.u64(uint64(x)) })
	case []float32:
		array(e, valueFloat32, v, func(x float32) { e.u32(math.Float32bits(x)) })
	case []float64:
		array(e, valueFloat64, v, func(x float64) { e.u64(math.Float64bits(x)) })
	case []bool:
		array(e, valueBool, v, func(x bool) { e.u8(boolByte(x)) })
	case []string:
		array(e, valueString, v, e.str)
	default:
		return fmt.Errorf("unsupported value type %T", v)
	}
	return nil
}

func array[T any](e *encoder, elem valueType, vs []T, put func(T)) {
	e.u32(uint32(valueArray))
	e.u32(uint32(elem))
	e.u64(uint64(len(vs)))
	for _, v := range vs {
		put(v)
	}
}
