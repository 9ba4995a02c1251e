package gguf

import (
	"fmt"
	"strings"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// Version is the GGUF version this package writes.
const Version = 3

// DefaultAlignment is the alignment of tensor data when general.alignment is absent.
const DefaultAlignment = 32

// Type is a ggml tensor type (enum ggml_type). The writer supports F32, F16 and Q8_0;
// the reader records any type.
type Type uint32

// The tensor types this package can write and decode.
const (
	TypeF32  Type = 0
	TypeF16  Type = 1
	TypeQ8_0 Type = 8
)

// QK8_0 is the number of values in one Q8_0 block.
const QK8_0 = 32

// q8_0BlockSize is the size in bytes of one Q8_0 block: an F16 scale and 32 int8.
const q8_0BlockSize = 2 + QK8_0

// String returns the ggml name of the type ("f32", "f16", "q8_0").
func (t Type) String() string {
	switch t {
	case TypeF32:
		return "f32"
	case TypeF16:
		return "f16"
	case TypeQ8_0:
		return "q8_0"
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// ParseType returns the type named by s ("f32", "f16", "q8_0"; case-insensitive).
func ParseType(s string) (Type, error) {
	for _, t := range []Type{TypeF32, TypeF16, TypeQ8_0} {
		if strings.EqualFold(s, t.String()) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown tensor type %q (want f32, f16 or q8_0)", s)
}

// FileType returns the value of general.file_type (enum llama_ftype) for a model
// whose matrices have type t: 0 all F32, 1 mostly F16, 7 mostly Q8_0.
func (t Type) FileType() (uint32, error) {
	switch t {
	case TypeF32:
		return 0, nil
	case TypeF16:
		return 1, nil
	case TypeQ8_0:
		return 7, nil
	}
	return 0, fmt.Errorf("gguf: no file type for tensor type %v", t)
}

// RowSize returns the size in bytes of a row of n values of type t. Q8_0 rows
// must hold a whole number of blocks.
func (t Type) RowSize(n int) (int64, error) {
	if n <= 0 {
		return 0, fmt.Errorf("gguf: row length %d must be positive", n)
	}
	switch t {
	case TypeF32:
		return 4 * int64(n), nil
	case TypeF16:
		return 2 * int64(n), nil
	case TypeQ8_0:
		if n%QK8_0 != 0 {
			return 0, fmt.Errorf("gguf: q8_0 row length %d is not a multiple of %d", n, QK8_0)
		}
		return int64(n/QK8_0) * q8_0BlockSize, nil
	}
	return 0, fmt.Errorf("gguf: cannot size tensor type %v", t)
}

// valueType is a GGUF metadata value type (enum gguf_type).
type valueType uint32

const (
	valueUint8   valueType = 0
	valueInt8    valueType = 1
	valueUint16  valueType = 2
	valueInt16   valueType = 3
	valueUint32  valueType = 4
	valueInt32   valueType = 5
	valueFloat32 valueType = 6
	valueBool    valueType = 7
	valueString  valueType = 8
	valueArray   valueType = 9
	valueUint64  valueType = 10
	valueInt64   valueType = 11
	valueFloat64 valueType = 12
)

// KV is one metadata entry. Value is one of uint8, int8, uint16, int16, uint32,
// int32, uint64, int64, float32, float64, bool, string, or a slice of one of them
// (GGUF arrays). [Read] returns values with exactly these Go types.
type KV struct {
	Key   string
	Value any
}

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name string
	// Shape lists the dimensions in ggml order: Shape[0] (ne[0]) is the row length,
	// the fastest-varying dimension. A weight W of a matrix product y = W·x with
	// len(x) = n_in and len(y) = n_out has Shape [n_in, n_out].
	Shape []uint64
	Type  Type
	// Offset is the position of the tensor's data relative to the start of the
	// data section (set by [Read]; the writer computes it).
	Offset uint64
}
