package gguf

import (
	"math"
	"testing"
)

func TestFloat16(t *testing.T) {
	tests := []struct {
		name string
		in   float32
		want uint16
	}{
		{"zero", 0, 0x0000},
		{"negative zero", float32(math.Copysign(0, -1)), 0x8000},
		{"one", 1, 0x3c00},
		{"minus two", -2, 0xc000},
		{"one third", 1.0 / 3, 0x3555},
		{"0.02", 0.02, 0x251f},
		{"largest half", 65504, 0x7bff},
		{"rounds up to inf", 65520, 0x7c00},
		{"just below the inf threshold", 65519.99, 0x7bff},
		{"overflow", 1e6, 0x7c00},
		{"negative overflow", -1e6, 0xfc00},
		{"inf", float32(math.Inf(1)), 0x7c00},
		{"smallest normal", 1.0 / (1 << 14), 0x0400},
		{"largest subnormal", 1023.0 / (1 << 24), 0x03ff},
		{"smallest subnormal", 1.0 / (1 << 24), 0x0001},
		{"half of smallest subnormal ties to even zero", 1.0 / (1 << 25), 0x0000},
		{"just above half of smallest subnormal", 1.0/(1<<25) + 1.0/(1<<35), 0x0001},
		{"1.5 smallest subnormals ties to even 2", 1.5 / (1 << 24), 0x0002},
		{"2.5 smallest subnormals ties to even 2", 2.5 / (1 << 24), 0x0002},
		{"below every subnormal", 1e-10, 0x0000},
		{"tie rounds to even (down)", 1 + 1.0/2048, 0x3c00},
		{"tie rounds to even (up)", 1 + 3.0/2048, 0x3c02},
		{"above tie rounds up", 1 + 1.0/2048 + 1.0/(1<<20), 0x3c01},
		{"subnormal carries into normal", 1.0/(1<<14) - 1.0/(1<<26), 0x0400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Float16(tt.in); got != tt.want {
				t.Errorf("Float16(%g) = %#04x, want %#04x", tt.in, got, tt.want)
			}
		})
	}
	if h := Float16(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("Float16(NaN) = %#04x, not a NaN", h)
	}
}

// Every half value survives a round trip through float32, and Float16 picks the
// nearest half for values between neighbours.
func TestFloat16Exhaustive(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := Float32(uint16(h))
		if math.IsNaN(float64(f)) {
			if h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
				t.Fatalf("Float32(%#04x) is NaN", h)
			}
			continue
		}
		if got := Float16(f); got != uint16(h) {
			t.Fatalf("Float16(Float32(%#04x) = %g) = %#04x", h, f, got)
		}
	}
	// Between consecutive positive finite halves a and b: values nearer a go to a.
	for h := uint16(0); h < 0x7bff; h++ {
		a, b := float64(Float32(h)), float64(Float32(h+1))
		for _, frac := range []float64{0.25, 0.49, 0.51, 0.75} {
			x := float32(a + frac*(b-a))
			want := h
			if frac > 0.5 {
				want = h + 1
			}
			if got := Float16(x); got != want {
				t.Fatalf("Float16(%g) = %#04x, want %#04x (between %g and %g)", x, got, want, a, b)
			}
		}
	}
}

func TestQuantizeQ8_0(t *testing.T) {
	block := func(f func(i int) float32) []float32 {
		x := make([]float32, QK8_0)
		for i := range x {
			x[i] = f(i)
		}
		return x
	}
	tests := []struct {
		name  string
		in    []float32
		scale float32 // expected d
		qs    []int8  // expected first values
		max   float64 // max abs dequantisation error
	}{
		{"zeros", block(func(int) float32 { return 0 }), 0, []int8{0, 0, 0}, 0},
		{"max is 127", block(func(i int) float32 { return float32(i-16) / 16 }), Float32(Float16(1.0 / 127)),
			[]int8{-127, -119, -111}, 1.0 / 127},
		{"integers", block(func(i int) float32 { return float32(i) - 4 }), Float32(Float16(27.0 / 127)),
			[]int8{-19, -14, -9}, 27.0 / 127},
		{"halves round away from zero", append([]float32{127, 0.5, -0.5}, make([]float32, QK8_0-3)...),
			1, []int8{127, 1, -1}, 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size, err := TypeQ8_0.RowSize(len(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			enc := make([]byte, size)
			if err := EncodeRow(TypeQ8_0, enc, tt.in); err != nil {
				t.Fatal(err)
			}
			if d := Float32(uint16(enc[0]) | uint16(enc[1])<<8); d != tt.scale {
				t.Errorf("scale = %g, want %g", d, tt.scale)
			}
			for i, q := range tt.qs {
				if got := int8(enc[2+i]); got != q {
					t.Errorf("q[%d] = %d, want %d", i, got, q)
				}
			}
			dec := make([]float32, len(tt.in))
			if err := DecodeRow(TypeQ8_0, dec, enc); err != nil {
				t.Fatal(err)
			}
			for i := range dec {
				if e := math.Abs(float64(dec[i] - tt.in[i])); e > tt.max*1.01 {
					t.Errorf("value %d: %g decodes to %g (error %g > %g)", i, tt.in[i], dec[i], e, tt.max)
				}
			}
		})
	}
}

func TestRowRoundTrip(t *testing.T) {
	src := make([]float32, 96)
	for i := range src {
		src[i] = float32(math.Sin(float64(i))) * 0.05
	}
	tests := []struct {
		typ Type
		tol float64 // relative to max|x|
	}{
		{TypeF32, 0},
		{TypeF16, 1.0 / 1024},
		{TypeQ8_0, 1.0 / 127},
	}
	for _, tt := range tests {
		t.Run(tt.typ.String(), func(t *testing.T) {
			size, _ := tt.typ.RowSize(len(src))
			enc := make([]byte, size)
			if err := EncodeRow(tt.typ, enc, src); err != nil {
				t.Fatal(err)
			}
			dec := make([]float32, len(src))
			if err := DecodeRow(tt.typ, dec, enc); err != nil {
				t.Fatal(err)
			}
			for i := range src {
				if e := math.Abs(float64(dec[i] - src[i])); e > tt.tol*0.05 {
					t.Fatalf("value %d: %g → %g (error %g)", i, src[i], dec[i], e)
				}
			}
		})
	}
}

func TestRowSizeAndEncodeErrors(t *testing.T) {
	tests := []struct {
		name string
		typ  Type
		n    int
		dst  int // encode buffer size; -1: the right size
		want int64
		err  bool
	}{
		{"f32", TypeF32, 10, -1, 40, false},
		{"f16", TypeF16, 10, -1, 20, false},
		{"q8_0", TypeQ8_0, 64, -1, 68, false},
		{"q8_0 partial block", TypeQ8_0, 40, 0, 0, true},
		{"zero length", TypeF32, 0, 0, 0, true},
		{"unknown type", Type(2), 32, 0, 0, true},
		{"short buffer", TypeF16, 10, 19, 20, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size, err := tt.typ.RowSize(tt.n)
			if tt.dst < 0 {
				if err != nil || size != tt.want {
					t.Fatalf("RowSize(%d) = %d, %v; want %d", tt.n, size, err, tt.want)
				}
				tt.dst = int(size)
			}
			encErr := EncodeRow(tt.typ, make([]byte, tt.dst), make([]float32, tt.n))
			if (encErr != nil) != tt.err {
				t.Errorf("EncodeRow error = %v, want error: %v", encErr, tt.err)
			}
		})
	}
}

func TestParseType(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    Type
		wantErr bool
	}{
		{"f32", TypeF32, false}, {"F16", TypeF16, false}, {"q8_0", TypeQ8_0, false}, {"Q8_0", TypeQ8_0, false},
		{"q4_0", 0, true}, {"", 0, true},
	} {
		got, err := ParseType(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseType(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
