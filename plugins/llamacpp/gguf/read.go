package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// ErrNotGGUF is returned by [Read] when the input does not start with the GGUF magic.
var ErrNotGGUF = errors.New("not a GGUF file")

// Limits that keep a corrupt header from asking for absurd allocations.
const (
	maxStringLen  = 1 << 26 // 64 MiB
	maxArrayLen   = 1 << 28
	maxCount      = 1 << 24 // tensors or metadata entries
	maxDimensions = 4
)

// Header is the parsed header of a GGUF file: everything but the tensor data.
type Header struct {
	Version  uint32
	Metadata []KV
	Tensors  []TensorInfo
	// Alignment of the data section (general.alignment or DefaultAlignment).
	Alignment int
	// DataOffset is the position of the data section in the file; a tensor's data
	// starts at DataOffset + TensorInfo.Offset.
	DataOffset int64
}

// Get returns the value of the metadata entry key.
func (h *Header) Get(key string) (any, bool) {
	for _, kv := range h.Metadata {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// ReadFile reads the header of the GGUF file at path.
func ReadFile(path string) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

// Read parses the header of a GGUF file (version 2 or 3) from r. It reads no
// tensor data. A truncated or malformed header is an error naming what was
// being read.
func Read(r io.Reader) (*Header, error) {
	d := &decoder{r: bufio.NewReader(r)}
	var magic [4]byte
	d.raw(magic[:])
	if d.err != nil {
		return nil, fmt.Errorf("reading magic: %w", d.err)
	}
	if string(magic[:]) != Magic {
		return nil, ErrNotGGUF
	}
	h := &Header{Version: d.u32(), Alignment: DefaultAlignment}
	if d.err == nil && (h.Version < 2 || h.Version > 3) {
		return nil, fmt.Errorf("unsupported GGUF version %d", h.Version)
	}
	nTensors, nKV := d.u64(), d.u64()
	if d.err != nil {
		return nil, fmt.Errorf("reading counts: %w", d.err)
	}
	if nTensors > maxCount || nKV > maxCount {
		return nil, fmt.Errorf("implausible counts: %d tensors, %d metadata entries", nTensors, nKV)
	}
	for i := uint64(0); i < nKV; i++ {
		key := d.str()
		v := d.value(valueType(d.u32()), true)
		if d.err != nil {
			return nil, fmt.Errorf("reading metadata entry %d (%q): %w", i, key, d.err)
		}
		h.Metadata = append(h.Metadata, KV{Key: key, Value: v})
		if key == "general.alignment" {
			a, ok := v.(uint32)
			if !ok || a == 0 || a&(a-1) != 0 {
				return nil, fmt.Errorf("general.alignment %v is not a power of two uint32", v)
			}
			h.Alignment = int(a)
		}
	}
	for i := uint64(0); i < nTensors; i++ {
		var t TensorInfo
		t.Name = d.str()
		n := d.u32()
		if d.err == nil && (n == 0 || n > maxDimensions) {
			return nil, fmt.Errorf("tensor %q has %d dimensions", t.Name, n)
		}
		for j := uint32(0); j < n && d.err == nil; j++ {
			t.Shape = append(t.Shape, d.u64())
		}
		t.Type = Type(d.u32())
		t.Offset = d.u64()
		if d.err != nil {
			return nil, fmt.Errorf("reading tensor info %d: %w", i, d.err)
		}
		h.Tensors = append(h.Tensors, t)
	}
	h.DataOffset = pad(d.n, h.Alignment)
	return h, nil
}

// decoder reads little-endian GGUF values; the first error sticks and later reads
// return zero values.
type decoder struct {
	r   *bufio.Reader
	n   int64
	err error
	buf [8]byte
}

func (d *decoder) raw(p []byte) {
	if d.err != nil {
		return
	}
	n, err := io.ReadFull(d.r, p)
	d.n += int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	d.err = err
}

func (d *decoder) u8() uint8 { d.raw(d.buf[:1]); return d.buf[0] }
func (d *decoder) u16() uint16 {
	d.raw(d.buf[:2])
	return binary.LittleEndian.Uint16(d.buf[:])
}
func (d *decoder) u32() uint32 {
	d.raw(d.buf[:4])
	return binary.LittleEndian.Uint32(d.buf[:])
}
func (d *decoder) u64() uint64 {
	d.raw(d.buf[:8])
	return binary.LittleEndian.Uint64(d.buf[:])
}

func (d *decoder) str() string {
	n := d.u64()
	if d.err != nil {
		return ""
	}
	if n > maxStringLen {
		d.err = fmt.Errorf("string of %d bytes", n)
		return ""
	}
	b := make([]byte, n)
	d.raw(b)
	return string(b)
}

// value reads one value of type t; arrays only when allowArray (GGUF has no
// nested arrays in practice and llama.cpp rejects them).
func (d *decoder) value(t valueType, allowArray bool) any {
	switch t {
	case valueUint8:
		return d.u8()
	case valueInt8:
		return int8(d.u8())
	case valueUint16:
		return d.u16()
	case valueInt16:
		return int16(d.u16())
	case valueUint32:
		return d.u32()
	case valueInt32:
		return int32(d.u32())
	case valueUint64:
		return d.u64()
	case valueInt64:
		return int64(d.u64())
	case valueFloat32:
		return math.Float32frombits(d.u32())
	case valueFloat64:
		return math.Float64frombits(d.u64())
	case valueBool:
		return d.u8() != 0
	case valueString:
		return d.str()
	case valueArray:
		if !allowArray {
			d.fail(errors.New("nested array"))
			return nil
		}
		elem := valueType(d.u32())
		n := d.u64()
		if d.err == nil && n > maxArrayLen {
			d.fail(fmt.Errorf("array of %d elements", n))
		}
		if d.err != nil {
			return nil
		}
		switch elem {
		case valueUint8:
			return readArray(d, n, d.u8)
		case valueInt8:
			return readArray(d, n, func() int8 { return int8(d.u8()) })
		case valueUint16:
			return readArray(d, n, d.u16)
		case valueInt16:
			return readArray(d, n, func() int16 { return int16(d.u16()) })
		case valueUint32:
			return readArray(d, n, d.u32)
		case valueInt32:
			return readArray(d, n, func() int32 { return int32(d.u32()) })
		case valueUint64:
			return readArray(d, n, d.u64)
		case valueInt64:
			return readArray(d, n, func() int64 { return int64(d.u64()) })
		case valueFloat32:
			return readArray(d, n, func() float32 { return math.Float32frombits(d.u32()) })
		case valueFloat64:
			return readArray(d, n, func() float64 { return math.Float64frombits(d.u64()) })
		case valueBool:
			return readArray(d, n, func() bool { return d.u8() != 0 })
		case valueString:
			return readArray(d, n, d.str)
		}
		d.fail(fmt.Errorf("array of unknown value type %d", elem))
		return nil
	}
	d.fail(fmt.Errorf("unknown value type %d", t))
	return nil
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// readArray reads n elements, growing the slice as it goes so that a corrupt
// count fails at end of input rather than with a huge allocation.
func readArray[T any](d *decoder, n uint64, next func() T) []T {
	out := make([]T, 0, min(n, 1<<16))
	for i := uint64(0); i < n && d.err == nil; i++ {
		out = append(out, next())
	}
	if d.err != nil {
		return nil
	}
	return out
}
