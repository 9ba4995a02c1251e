package embedded_test

import (
	"testing"

	"github.com/ragway/ragway/gateway/vectorstore"
	"github.com/ragway/ragway/gateway/vectorstore/embedded"
	"github.com/ragway/ragway/gateway/vectorstore/vectorstoretest"
)

func TestContract(t *testing.T) {
	vectorstoretest.Run(t, func(t *testing.T) vectorstore.Store { return embedded.New() })
}
