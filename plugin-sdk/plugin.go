package sdk

import (
	"context"
	"os"

	"github.com/hashicorp/go-plugin"
	"github.com/ragway/ragway/plugin-sdk/internal/pb"
	"google.golang.org/grpc"
)

// ProtocolVersion is the go-plugin handshake version of the wire contract
// (plugin-sdk/proto/backend.proto, enum ProtocolVersion). It changes only
// when the wire contract breaks.
const ProtocolVersion = 1

// APIVersion is the semantic version of the Backend contract this SDK
// implements. Plugins report it in Info; the host accepts plugins whose
// major version equals its own.
//
// 1.1 added vLLM's sampling extras; 1.2 added Tokenize (Tokenizer),
// EmbedRequest.Truncate and ModelInfo.MaxInputTokens; 1.3 lets a delta event
// carry the prompt's Usage early (Event.Usage); 1.4 added Rerank (Reranker) and
// LoadRequest.Rerank. A plugin built against an older minor lacks them: Tokenize
// and Rerank answer ErrUnsupported, Truncate is ignored, MaxInputTokens is 0, and
// a generation cut short reports no prompt tokens.
const APIVersion = "1.5.0"

// Handshake is the go-plugin handshake shared by host and plugins. The magic
// cookie only keeps a plugin binary from being run by hand by mistake; it is
// not a security measure.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "RAGWAY_PLUGIN",
	MagicCookieValue: "ragway-backend-4b1d7e0c",
}

// pluginName is the name of the one plugin a ragway plugin binary serves.
const pluginName = "backend"

// maxMessageBytes bounds one gRPC message (large embedding batches).
const maxMessageBytes = 64 << 20

// grpcPlugin is the go-plugin glue: it serves a Backend (plugin side) and
// builds a client for one (host side).
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl Backend
}

var _ plugin.GRPCPlugin = (*grpcPlugin)(nil)

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterBackendServer(s, &server{impl: p.impl})
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return pb.NewBackendClient(c), nil
}

// pluginSets lists what a plugin serves per protocol version. Keep serving
// old versions here when the protocol changes.
func pluginSets(impl Backend) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		ProtocolVersion: {pluginName: &grpcPlugin{impl: impl}},
	}
}

// EnvModelsDir names the environment variable in which the host tells a plugin its
// models directory (absolute): where `ragway models pull` puts model files. A backend
// may resolve a model named without a path there (llamacpp's model_path: NAME).
const EnvModelsDir = "RAGWAY_MODELS_DIR"

// ModelsDir returns the models directory the host told the plugin ("" if none).
func ModelsDir() string { return os.Getenv(EnvModelsDir) }
