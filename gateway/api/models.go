package api

import (
	"context"
	"net/url"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/oai"
	"github.com/ragway/ragway/gateway/workers"
)

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type modelList struct {
	Object string        `json:"object"`
	Data   []modelObject `json:"data"`
}

func modelObj(id string, m workers.ModelStatus) modelObject {
	return modelObject{ID: id, Object: "model", Created: m.Created.Unix(), OwnedBy: "ragway"}
}

// listModels serves GET /v1/models: every model name and alias.
func (s *server) listModels(c *fiber.Ctx) error {
	list := modelList{Object: "list", Data: []modelObject{}}
	for _, m := range s.b.Models() {
		list.Data = append(list.Data, modelObj(m.Name, m))
		for _, a := range m.Aliases {
			list.Data = append(list.Data, modelObj(a, m))
		}
	}
	return c.JSON(list)
}

// getModel serves GET /v1/models/{id}; id may be an alias and may contain
// slashes.
func (s *server) getModel(c *fiber.Ctx) error {
	id, err := url.PathUnescape(c.Params("+"))
	if err != nil {
		return oai.Invalid("model", oai.CodeInvalidValue, "invalid model id: it is not valid percent-encoding")
	}
	m, ok := s.b.Model(id)
	if !ok {
		return oai.ModelNotFound(id)
	}
	return c.JSON(modelObj(id, m))
}

// healthz serves GET /healthz: the process is alive.
func (s *server) healthz(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok"})
}

type readyReplica struct {
	ID        int    `json:"id"`
	State     string `json:"state"`
	Pid       int    `json:"pid"`
	Restarts  int    `json:"restarts"`
	LastError string `json:"last_error"`
	// ColdStarts counts the replica's starts from idle (idle_timeout) on a request;
	// LastColdStartMS is how long the last one took, in milliseconds.
	ColdStarts      int   `json:"cold_starts"`
	LastColdStartMS int64 `json:"last_cold_start_ms"`
}

type readyModel struct {
	Name     string         `json:"name"`
	Ready    bool           `json:"ready"`
	Replicas []readyReplica `json:"replicas"`
}

type readyDatabase struct {
	Ready bool   `json:"ready"`
	Error string `json:"error,omitempty"`
}

type readyBody struct {
	Status   string         `json:"status"`
	Database *readyDatabase `json:"database,omitempty"`
	Models   []readyModel   `json:"models"`
}

// readyPingTimeout bounds /readyz's database check.
const readyPingTimeout = 2 * time.Second

// readyz serves GET /readyz: 200 when the database answers and every model has
// a replica that is ready or can become ready (workers.ModelStatus.Serviceable),
// else 503; the body gives the database's state and lists each model's replicas
// with their states and last errors.
func (s *server) readyz(c *fiber.Ctx) error {
	body := readyBody{Status: "ready", Models: []readyModel{}}
	if s.opts.Database != nil {
		ctx, cancel := context.WithTimeout(c.UserContext(), readyPingTimeout)
		// /readyz needs no key: the state's words name no host or user (the causes go
		// to the log).
		st := s.opts.Database.Check(ctx)
		cancel()
		body.Database = &readyDatabase{Ready: st.Ready, Error: st.Error}
		if !st.Ready {
			body.Status = "unavailable"
		}
	}
	for _, m := range s.b.Models() {
		rm := readyModel{Name: m.Name, Ready: m.Serviceable(), Replicas: []readyReplica{}}
		for _, r := range m.Replicas {
			rm.Replicas = append(rm.Replicas, readyReplica{ID: r.ID, State: string(r.State), Pid: r.Pid, Restarts: r.Restarts, LastError: r.LastError,
				ColdStarts: r.ColdStarts, LastColdStartMS: r.LastColdStart.Milliseconds()})
		}
		if !rm.Ready {
			body.Status = "unavailable"
		}
		body.Models = append(body.Models, rm)
	}
	status := fiber.StatusOK
	if body.Status != "ready" {
		status = fiber.StatusServiceUnavailable
	}
	return c.Status(status).JSON(body)
}
