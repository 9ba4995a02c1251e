package ws_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/ws"
)

// FuzzFrame sends any text frame on an authenticated socket: the server answers
// frames in the protocol's shape (an error frame in the OpenAI error shape for a bad
// one) and the socket stays up, which a ping then proves. Under plain `go test` it
// runs the seeds only; task test runs it for a few seconds.
func FuzzFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"chat","id":"c1","model":"chat","content":"hello"}`,
		`{"type":"chat","id":"c2","model":"chat","messages":[{"role":"user","content":"x\u0000"}],"params":{"max_tokens":2}}`,
		`{"type":"cancel","id":"c1"}`,
		`{"type":"auth","api_key":"k"}`,
		`{"type":"chat","id":{"x":1}}`,
		`{"type":"chat","id":"c3","model":"embed","content":"e","rag":{"knowledge_base":"k","top_k":-1}}`,
		"{\"type\":\"chat\",\"id\":\"\xff\",\"content\":\"\xfe\"}",
		`[]`, `null`, ``, `{"type":"ping"}`,
	} {
		f.Add([]byte(s))
	}
	s := start(f, newFake(), ws.Options{})
	var conn *websocket.Conn
	f.Fuzz(func(t *testing.T, data []byte) {
		if conn == nil {
			c, resp, err := websocket.DefaultDialer.Dial(s.url, http.Header{"Authorization": {"Bearer " + apitest.Key}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			conn = c
		}
		if err := conn.WriteMessage(websocket.TextMessage, data); err != nil {
			t.Fatalf("write: %v", err)
		}
		if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
			t.Fatalf("the socket dropped after %q: %v", data, err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				t.Fatalf("the socket dropped after %q: %v", data, err)
			}
			if checkFrame(t, b) == "pong" {
				return
			}
		}
	})
}

// checkFrame fails unless data is a server frame: JSON with a known type, an error
// frame with the error shape.
func checkFrame(t *testing.T, data []byte) string {
	t.Helper()
	var fr struct {
		Type  string `json:"type"`
		Error *struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &fr); err != nil {
		t.Fatalf("frame %q is not JSON: %v", data, err)
	}
	switch fr.Type {
	case "start", "token", "sources", "done", "pong":
	case "error":
		if fr.Error == nil || fr.Error.Message == "" || fr.Error.Type == "" {
			t.Fatalf("error frame without the error shape: %s", data)
		}
	default:
		t.Fatalf("frame of unknown type: %s", data)
	}
	return fr.Type
}
