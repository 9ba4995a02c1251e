#include "textflag.h"

// func dot8AVX2(a, b []int8) int32
// len(a) == len(b), a multiple of 32. Each step sign-extends 16 codes of each to
// 16 bits (VPMOVSXBW), multiplies them and adds pairs of products to 32 bits
// (VPMADDWD: |sum| ≤ 2 × 128 × 128, no overflow), in two accumulators.
TEXT ·dot8AVX2(SB), NOSPLIT, $0-52
	MOVQ a_base+0(FP), SI
	MOVQ a_len+8(FP), CX
	MOVQ b_base+24(FP), DI
	VPXOR Y0, Y0, Y0
	VPXOR Y4, Y4, Y4
	TESTQ CX, CX
	JZ done

loop:
	VPMOVSXBW (SI), Y1
	VPMOVSXBW (DI), Y2
	VPMADDWD Y1, Y2, Y3
	VPADDD Y3, Y0, Y0
	VPMOVSXBW 16(SI), Y1
	VPMOVSXBW 16(DI), Y2
	VPMADDWD Y1, Y2, Y3
	VPADDD Y3, Y4, Y4
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $32, CX
	JNZ loop

done:
	VPADDD Y4, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDD X1, X0, X0
	VPSHUFD $0x4E, X0, X1
	VPADDD X1, X0, X0
	VPSHUFD $0xB1, X0, X1
	VPADDD X1, X0, X0
	VMOVD X0, AX
	MOVL AX, ret+48(FP)
	VZEROUPPER
	RET
