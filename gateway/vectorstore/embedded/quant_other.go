//go:build !amd64

package embedded

const useDot8AVX2 = false

func dot8AVX2(a, b []int8) int32 { return dot8Go(a, b) }
