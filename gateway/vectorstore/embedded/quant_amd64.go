package embedded

import "golang.org/x/sys/cpu"

var useDot8AVX2 = cpu.X86.HasAVX2

// dot8AVX2 is dot8 with AVX2 (quant_amd64.s): len(a) == len(b), a multiple of 32.
//
//go:noescape
func dot8AVX2(a, b []int8) int32
