package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Float16 returns the IEEE 754 half-precision bits nearest to f (round to
// nearest, ties to even), as ggml's GGML_FP32_TO_FP16 does: values beyond the
// half range become ±Inf, NaN stays NaN.
func Float16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff

	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 // quiet NaN
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// A half subnormal m·2^-24; f = (mant|1<<23)·2^(exp-150).
		if e < -10 {
			return sign // below half of the smallest subnormal
		}
		full := mant | 0x800000
		shift := uint(14 - e)
		h := full >> shift
		rem := full & (1<<shift - 1)
		halfway := uint32(1) << (shift - 1)
		if rem > halfway || (rem == halfway && h&1 == 1) {
			h++ // may carry into the smallest normal: still the right bits
		}
		return sign | uint16(h)
	}
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // a carry into the exponent is correct, up to Inf
	}
	return sign | uint16(h)
}

// Float32 returns the value of the IEEE 754 half-precision bits h.
func Float32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0:
		// Subnormal: m·2^-24, exact in float32.
		v := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// quantizeQ8_0 writes the Q8_0 blocks of src (len a multiple of [QK8_0]) to dst,
// exactly as ggml's quantize_row_q8_0_ref: per block of 32, d = max|x|/127 stored
// as F16, then 32 int8 values round(x/d) (halves away from zero).
func quantizeQ8_0(dst []byte, src []float32) {
	for b := 0; b < len(src)/QK8_0; b++ {
		x := src[b*QK8_0 : (b+1)*QK8_0]
		out := dst[b*q8_0BlockSize : (b+1)*q8_0BlockSize]
		var amax float32
		for _, v := range x {
			if a := float32(math.Abs(float64(v))); a > amax {
				amax = a
			}
		}
		d := amax / 127
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(out, Float16(d))
		for j, v := range x {
			out[2+j] = byte(int8(math.Round(float64(v * id))))
		}
	}
}

// EncodeRow encodes the values of src as type t into dst, which must be exactly
// t.RowSize(len(src)) bytes long.
func EncodeRow(t Type, dst []byte, src []float32) error {
	size, err := t.RowSize(len(src))
	if err != nil {
		return err
	}
	if int64(len(dst)) != size {
		return fmt.Errorf("gguf: %v row of %d values needs %d bytes, got %d", t, len(src), size, len(dst))
	}
	switch t {
	case TypeF32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case TypeF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], Float16(v))
		}
	case TypeQ8_0:
		quantizeQ8_0(dst, src)
	}
	return nil
}

// DecodeRow decodes a row of type t from src into dst (len(dst) values; src must
// be exactly t.RowSize(len(dst)) bytes). Q8_0 decodes to d·q, as ggml does.
func DecodeRow(t Type, dst []float32, src []byte) error {
	size, err := t.RowSize(len(dst))
	if err != nil {
		return err
	}
	if int64(len(src)) != size {
		return fmt.Errorf("gguf: %v row of %d values needs %d bytes, got %d", t, len(dst), size, len(src))
	}
	switch t {
	case TypeF32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case TypeF16:
		for i := range dst {
			dst[i] = Float32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case TypeQ8_0:
		for b := 0; b < len(dst)/QK8_0; b++ {
			blk := src[b*q8_0BlockSize:]
			d := Float32(binary.LittleEndian.Uint16(blk))
			for j := 0; j < QK8_0; j++ {
				dst[b*QK8_0+j] = d * float32(int8(blk[2+j]))
			}
		}
	}
	return nil
}
