package api

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/oai"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// embeddingRequest is the body of POST /v1/embeddings.
type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat *string         `json:"encoding_format"`
	Dimensions     *int            `json:"dimensions"`
}

// embeddings serves POST /v1/embeddings for embedding models. The response
// is written by hand: float arrays are most of it.
func (s *server) embeddings(c *fiber.Ctx, cl *call) error {
	var req embeddingRequest
	if err := oai.Decode(c.Body(), &req, ""); err != nil {
		return err
	}
	m, aerr := s.resolveModel(cl, req.Model, kindEmbedding)
	if aerr != nil {
		return aerr
	}
	inputs, aerr := oai.Strings(req.Input, "input", true)
	if aerr != nil {
		return aerr
	}
	if inputs == nil {
		return oai.Missing("input")
	}
	if len(inputs) == 0 {
		return oai.Invalid("input", oai.CodeInvalidValue, "'input' must contain at least one string")
	}
	for _, in := range inputs {
		if in == "" {
			return oai.Invalid("input", oai.CodeInvalidValue, "'input' cannot contain an empty string")
		}
	}
	b64 := false
	if f := req.EncodingFormat; f != nil {
		switch *f {
		case "float":
		case "base64":
			b64 = true
		default:
			return oai.Invalid("encoding_format", oai.CodeInvalidValue, "invalid value for 'encoding_format': '%s'; it must be 'float' or 'base64'", *f)
		}
	}
	if req.Dimensions != nil {
		return oai.Unsupported("dimensions", "'dimensions' is not supported: the model's embedding size is fixed")
	}

	waiting, _, stop := whileClientWaits(c)
	defer stop()
	ctx, cancel := context.WithTimeout(waiting, s.opts.RequestTimeout)
	resp, err := s.b.Embed(ctx, m.Name, sdk.EmbedRequest{Input: inputs})
	cancel()
	stop()
	if err != nil {
		return err
	}
	if len(resp.Embeddings) != len(inputs) {
		return oai.BackendFailed("the backend returned " + strconv.Itoa(len(resp.Embeddings)) + " embeddings for " + strconv.Itoa(len(inputs)) + " inputs")
	}
	cl.tokens(resp.PromptTokens, 0)

	b := make([]byte, 0, 64+len(inputs)*(len(resp.Embeddings[0])*12+48))
	b = append(b, `{"object":"list","data":[`...)
	var raw []byte
	for i, emb := range resp.Embeddings {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"embedding":`...)
		if b64 {
			raw = raw[:0]
			for _, f := range emb {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
			}
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, raw)
			b = append(b, '"')
		} else {
			b = append(b, '[')
			for k, f := range emb {
				if k > 0 {
					b = append(b, ',')
				}
				b = appendFloat32(b, f)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	b = append(b, `],"model":`...)
	b = oai.AppendString(b, req.Model)
	b = append(b, `,"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(resp.PromptTokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(resp.PromptTokens), 10)
	b = append(b, "}}"...)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(b)
}

// appendFloat32 appends f as a JSON number (NaN and ±Inf, which JSON
// cannot carry, as 0).
func appendFloat32(b []byte, f float32) []byte {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return append(b, '0')
	}
	return strconv.AppendFloat(b, float64(f), 'g', -1, 32)
}
