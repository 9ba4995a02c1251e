package main

import (
	"math"

	"github.com/hybridgroup/yzma/pkg/llama"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// defaultTemperature applies when a request sets none (llama.cpp's server
// default).
const defaultTemperature = 0.8

// penaltyLastN is how many recent tokens the repetition penalties look at.
const penaltyLastN = 64

// newSampler builds llama.cpp's sampler chain for one request:
// grammar → penalties → top-k → top-p → min-p → temperature → seeded draw, or
// greedy when the temperature is 0.
//
// With suppress set, the chain first forbids those tokens (the model's
// end-of-generation tokens, for ignore_eos and min_tokens). With grammar set (a
// GBNF grammar the caller checked llama.cpp takes), only tokens that continue a
// sentence of it are drawn, and once the sentence is whole, only the end. A grammar
// llama.cpp does not take makes no chain (0).
func newSampler(model llama.Model, p sdk.Sampling, suppress []llama.Token, grammar string) llama.Sampler {
	chain := llama.SamplerChainInit(llama.SamplerChainDefaultParams())
	if grammar != "" {
		g := llama.SamplerInitGrammar(llama.ModelGetVocab(model), grammar, "root")
		if g == 0 {
			llama.SamplerFree(chain)
			return 0
		}
		llama.SamplerChainAdd(chain, g)
	}
	if len(suppress) > 0 {
		bias := make([]llama.LogitBias, len(suppress))
		for i, t := range suppress {
			bias[i] = llama.LogitBias{Token: t, Bias: float32(math.Inf(-1))}
		}
		nVocab := llama.VocabNTokens(llama.ModelGetVocab(model))
		llama.SamplerChainAdd(chain, llama.SamplerInitLogitBias(nVocab, int32(len(bias)), &bias[0]))
	}
	if p.RepetitionPenalty > 0 && p.RepetitionPenalty != 1 || p.FrequencyPenalty != 0 || p.PresencePenalty != 0 {
		repeat := float32(1)
		if p.RepetitionPenalty > 0 {
			repeat = float32(p.RepetitionPenalty)
		}
		nVocab := llama.VocabNTokens(llama.ModelGetVocab(model))
		llama.SamplerChainAdd(chain, llama.SamplerInitPenalties(nVocab, penaltyLastN, repeat, float32(p.FrequencyPenalty), float32(p.PresencePenalty)))
	}
	temp := defaultTemperature
	if p.Temperature != nil {
		temp = *p.Temperature
	}
	if temp <= 0 {
		llama.SamplerChainAdd(chain, llama.SamplerInitGreedy())
		return chain
	}
	if p.TopK > 0 {
		llama.SamplerChainAdd(chain, llama.SamplerInitTopK(int32(p.TopK)))
	}
	if p.TopP != nil && *p.TopP < 1 {
		llama.SamplerChainAdd(chain, llama.SamplerInitTopP(float32(*p.TopP), 1))
	}
	if p.MinP > 0 {
		llama.SamplerChainAdd(chain, llama.SamplerInitMinP(float32(p.MinP), 1))
	}
	llama.SamplerChainAdd(chain, llama.SamplerInitTemp(float32(temp)))
	seed := uint32(llama.DefaultSeed)
	if p.Seed != nil {
		seed = uint32(*p.Seed)
	}
	llama.SamplerChainAdd(chain, llama.SamplerInitDist(seed))
	return chain
}
