package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/config"
	"github.com/ragway/ragway/gateway/models"
	"github.com/ragway/ragway/gateway/oai"
	"github.com/ragway/ragway/gateway/pull"
	"github.com/ragway/ragway/gateway/workers"
)

// ModelAdmin manages the models served while the gateway runs (package models'
// *Service implements it).
type ModelAdmin interface {
	List() ([]models.Model, []workers.ModelStatus)
	Changes(ctx context.Context, limit int) ([]models.Change, error)
	Add(ctx context.Context, actor string, m config.Model) error
	Replace(ctx context.Context, actor, name string, m config.Model) error
	Scale(ctx context.Context, actor, name string, n int) error
	Alias(ctx context.Context, actor, alias, target string) error
	Remove(ctx context.Context, actor, name string) error
	Reload(ctx context.Context, actor string) (models.Report, error)
}

// adminRoutes mounts /admin (scope admin): the models and their changes.
//
// Model names may contain slashes: routes that name a model end with it (percent-
// encoded or not), and actions on a model are its path's last segment
// (/admin/models/{name}/replace, /admin/models/{name}/scale).
func (s *server) adminRoutes(app *fiber.App) {
	admin := s.requireScope(auth.ScopeAdmin)
	app.Get("/admin/models", admin, s.adminListModels)
	app.Get("/admin/models/changes", admin, s.adminModelChanges)
	app.Post("/admin/models", admin, s.adminAddModel)
	if s.opts.Pulls != nil {
		app.Post("/admin/models/pull", admin, s.adminPull)
		app.Get("/admin/models/pulls", admin, s.adminPulls)
	}
	app.Post("/admin/models/+", admin, s.adminModelAction)
	app.Put("/admin/models/+", admin, s.adminReplaceModel)
	app.Delete("/admin/models/+", admin, s.adminRemoveModel)
	app.Put("/admin/aliases/+", admin, s.adminSetAlias)
	app.Delete("/admin/aliases/+", admin, s.adminRemoveAlias)
	app.Post("/admin/reload", admin, s.adminReload)
}

type adminReplica struct {
	ID          int    `json:"id"`
	State       string `json:"state"`
	Pid         int    `json:"pid"`
	Restarts    int    `json:"restarts"`
	Outstanding int    `json:"outstanding"`
	LastError   string `json:"last_error"`
	Since       int64  `json:"since"`
	// ColdStarts counts starts from idle on a request; LastColdStartMS is the
	// last one's time.
	ColdStarts      int   `json:"cold_starts"`
	LastColdStartMS int64 `json:"last_cold_start_ms"`
}

type adminModel struct {
	Name     string          `json:"name"`
	Object   string          `json:"object"`
	Aliases  []string        `json:"aliases"`
	Backend  string          `json:"backend"`
	Source   string          `json:"source"`
	State    string          `json:"state"` // serving, starting, unavailable, draining
	Queued   int             `json:"queued"`
	Replicas []adminReplica  `json:"replicas"`
	Config   json.RawMessage `json:"config,omitempty"`
}

func toAdminModel(st workers.ModelStatus, source string, cfg *config.Model) adminModel {
	m := adminModel{Name: st.Name, Object: "model", Aliases: st.Aliases, Backend: st.Backend, Source: source, Queued: st.Queued,
		Replicas: []adminReplica{}}
	if m.Aliases == nil {
		m.Aliases = []string{}
	}
	serving, starting := false, false
	for _, r := range st.Replicas {
		m.Replicas = append(m.Replicas, adminReplica{ID: r.ID, State: string(r.State), Pid: r.Pid, Restarts: r.Restarts,
			Outstanding: r.Outstanding, LastError: r.LastError, Since: r.Since.Unix(), ColdStarts: r.ColdStarts,
			LastColdStartMS: r.LastColdStart.Milliseconds()})
		serving = serving || r.State == workers.StateReady || r.State == workers.StateBusy
		starting = starting || r.State == workers.StateStarting || r.State == workers.StateLoading || r.State == workers.StateIdle
	}
	switch {
	case source == "":
		m.State = "draining"
	case serving:
		m.State = "serving"
	case starting:
		m.State = "starting"
	default:
		m.State = "unavailable"
	}
	if cfg != nil {
		m.Config, _ = json.Marshal(cfg)
	}
	return m
}

// adminListModels serves GET /admin/models: every model, its source, state and
// replicas; "draining" lists the versions replaced or removed that are finishing
// their requests.
func (s *server) adminListModels(c *fiber.Ctx) error {
	served, draining := s.opts.Models.List()
	out := struct {
		Object   string       `json:"object"`
		Data     []adminModel `json:"data"`
		Draining []adminModel `json:"draining"`
	}{Object: "list", Data: []adminModel{}, Draining: []adminModel{}}
	for _, m := range served {
		out.Data = append(out.Data, toAdminModel(m.Status, string(m.Source), &m.Config))
	}
	for _, st := range draining {
		out.Draining = append(out.Draining, toAdminModel(st, "", nil))
	}
	return c.JSON(out)
}

type adminChange struct {
	ID      int64           `json:"id"`
	At      string          `json:"at"`
	Actor   string          `json:"actor"`
	Gateway string          `json:"gateway"`
	Action  string          `json:"action"`
	Model   string          `json:"model"`
	Config  json.RawMessage `json:"config,omitempty"`
	OK      bool            `json:"ok"`
	Error   string          `json:"error,omitempty"`
}

// adminModelChanges serves GET /admin/models/changes?limit=N (default 100, at most
// 1000): the latest changes, newest first.
func (s *server) adminModelChanges(c *fiber.Ctx) error {
	limit := 100
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return oai.Invalid("limit", oai.CodeInvalidValue, "invalid 'limit': want a whole number from 1 to 1000")
		}
		limit = n
	}
	changes, err := s.opts.Models.Changes(c.UserContext(), limit)
	if err != nil {
		return err
	}
	out := make([]adminChange, len(changes))
	for i, ch := range changes {
		out[i] = adminChange{ID: ch.ID, At: ch.At.UTC().Format(time.RFC3339Nano), Actor: ch.Actor, Gateway: ch.Gateway, Action: ch.Action,
			Model: ch.Model, Config: ch.Config, OK: ch.OK, Error: ch.Error}
	}
	return c.JSON(fiber.Map{"object": "list", "data": out})
}

// actor names who asks, for the record of changes: the key's user and prefix.
func actor(c *fiber.Ctx) string {
	p := principalOf(c)
	return fmt.Sprintf("%s (%s)", p.UserName, p.Prefix)
}

// modelEntry decodes a body holding one models entry, checked as the config file's.
func modelEntry(body []byte) (config.Model, error) {
	m, err := config.ParseModelJSON(body)
	if err != nil {
		return config.Model{}, modelError(&models.InvalidError{Err: err})
	}
	return m, nil
}

// adminAddModel serves POST /admin/models: a models entry (the config file's schema,
// as JSON). It answers once the model serves here (201), and every gateway on the
// database serves it soon after.
func (s *server) adminAddModel(c *fiber.Ctx) error {
	m, err := modelEntry(c.Body())
	if err != nil {
		return err
	}
	if err := s.opts.Models.Add(c.UserContext(), actor(c), m); err != nil {
		return modelError(err)
	}
	return c.Status(fiber.StatusCreated).JSON(s.adminModelJSON(m.Name))
}

// adminModelAction serves POST /admin/models/{name}/replace and
// /admin/models/{name}/scale.
func (s *server) adminModelAction(c *fiber.Ctx) error {
	path := c.Params("+")
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return fiber.ErrNotFound
	}
	name, err := modelName(path[:i], "name")
	if err != nil {
		return err
	}
	switch path[i+1:] {
	case "replace":
		return s.replaceModel(c, name)
	case "scale":
		var req struct {
			Replicas *int `json:"replicas"`
		}
		if err := oai.Decode(c.Body(), &req, ""); err != nil {
			return err
		}
		if req.Replicas == nil {
			return oai.Missing("replicas")
		}
		if *req.Replicas < 1 || *req.Replicas > 64 {
			return oai.Invalid("replicas", oai.CodeInvalidValue, "invalid 'replicas': want 1 to 64 (to scale to zero when idle, set idle_timeout)")
		}
		if err := s.opts.Models.Scale(c.UserContext(), actor(c), name, *req.Replicas); err != nil {
			return modelError(err)
		}
		return c.JSON(s.adminModelJSON(name))
	}
	return fiber.ErrNotFound
}

// adminReplaceModel serves PUT /admin/models/{name}: POST …/replace.
func (s *server) adminReplaceModel(c *fiber.Ctx) error {
	name, err := modelName(c.Params("+"), "name")
	if err != nil {
		return err
	}
	return s.replaceModel(c, name)
}

func (s *server) replaceModel(c *fiber.Ctx, name string) error {
	m, err := modelEntry(c.Body())
	if err != nil {
		return err
	}
	if err := s.opts.Models.Replace(c.UserContext(), actor(c), name, m); err != nil {
		return modelError(err)
	}
	return c.JSON(s.adminModelJSON(name))
}

// adminRemoveModel serves DELETE /admin/models/{name}: new requests for it are 404 at
// once; the ones it has finish.
func (s *server) adminRemoveModel(c *fiber.Ctx) error {
	name, err := modelName(c.Params("+"), "name")
	if err != nil {
		return err
	}
	if err := s.opts.Models.Remove(c.UserContext(), actor(c), name); err != nil {
		return modelError(err)
	}
	return c.JSON(fiber.Map{"name": name, "object": "model", "deleted": true})
}

// adminSetAlias serves PUT /admin/aliases/{alias} {"model": "…"}: the alias points at
// that model at once.
func (s *server) adminSetAlias(c *fiber.Ctx) error {
	alias, err := modelName(c.Params("+"), "alias")
	if err != nil {
		return err
	}
	var req struct {
		Model string `json:"model"`
	}
	if err := oai.Decode(c.Body(), &req, ""); err != nil {
		return err
	}
	if req.Model == "" {
		return oai.Missing("model")
	}
	if e := oai.CheckText("model", req.Model); e != nil {
		return e
	}
	if err := s.opts.Models.Alias(c.UserContext(), actor(c), alias, req.Model); err != nil {
		return modelError(err)
	}
	return c.JSON(fiber.Map{"alias": alias, "model": req.Model})
}

// adminRemoveAlias serves DELETE /admin/aliases/{alias}.
func (s *server) adminRemoveAlias(c *fiber.Ctx) error {
	alias, err := modelName(c.Params("+"), "alias")
	if err != nil {
		return err
	}
	if err := s.opts.Models.Alias(c.UserContext(), actor(c), alias, ""); err != nil {
		return modelError(err)
	}
	return c.JSON(fiber.Map{"alias": alias, "deleted": true})
}

// adminReload serves POST /admin/reload: the config file is read again and its
// models served as it says.
func (s *server) adminReload(c *fiber.Ctx) error {
	rep, err := s.opts.Models.Reload(c.UserContext(), actor(c))
	if err != nil {
		return modelError(err)
	}
	nonNil := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return c.JSON(fiber.Map{"added": nonNil(rep.Added), "changed": nonNil(rep.Changed), "removed": nonNil(rep.Removed),
		"unchanged": nonNil(rep.Unchanged)})
}

// adminModelJSON is the model called name as GET /admin/models shows it.
func (s *server) adminModelJSON(name string) adminModel {
	served, _ := s.opts.Models.List()
	for _, m := range served {
		if m.Status.Name == name {
			return toAdminModel(m.Status, string(m.Source), &m.Config)
		}
	}
	return adminModel{Name: name, Object: "model", Aliases: []string{}, Replicas: []adminReplica{}}
}

// modelName decodes a model's name (or alias) from a path.
func modelName(raw, param string) (string, error) {
	name, err := url.PathUnescape(raw)
	if err != nil {
		return "", oai.Invalid(param, oai.CodeInvalidValue, "the %s in the path is not valid percent-encoding", param)
	}
	if e := oai.CheckText(param, name); e != nil {
		return "", e
	}
	if err := config.CheckModelName(name); err != nil {
		return "", oai.Invalid(param, oai.CodeInvalidValue, "invalid %s: %v", param, err)
	}
	return name, nil
}

// Error code of a model that did not start.
const codeModelNotStarted = "model_not_started"

// modelError maps the errors of a model change to the API's.
func modelError(err error) error {
	var inv *models.InvalidError
	switch {
	case errors.As(err, &inv):
		e := &oai.Error{Status: http.StatusBadRequest, Type: oai.TypeInvalidRequest, Code: oai.CodeInvalidValue, Message: inv.Error()}
		var fe *config.FieldError
		if errors.As(inv.Err, &fe) {
			e.Param = fe.Path
		}
		return e
	case errors.Is(err, models.ErrNotFound):
		return &oai.Error{Status: http.StatusNotFound, Type: oai.TypeInvalidRequest, Code: oai.CodeModelNotFound, Param: "model", Message: err.Error()}
	case errors.Is(err, models.ErrConflict), errors.Is(err, workers.ErrConflict):
		return &oai.Error{Status: http.StatusConflict, Type: oai.TypeInvalidRequest, Code: oai.CodeConflict, Message: err.Error()}
	case errors.Is(err, models.ErrNotStarted):
		return &oai.Error{Status: http.StatusUnprocessableEntity, Type: oai.TypeInvalidRequest, Code: codeModelNotStarted, Message: err.Error()}
	}
	return err
}

// Pulls runs model downloads in the background (package pull's *Puller implements it).
type Pulls interface {
	Start(src, sha256 string) (pull.Job, error)
	Jobs() []pull.Job
}

type pullJSON struct {
	ID       string `json:"id"`
	Object   string `json:"object"`
	Source   string `json:"source"`
	Name     string `json:"name"`
	Status   string `json:"status"`
	Bytes    int64  `json:"bytes"`
	Total    int64  `json:"total"`
	SHA256   string `json:"sha256,omitempty"`
	Resumed  bool   `json:"resumed"`
	Error    string `json:"error,omitempty"`
	Started  int64  `json:"started_at"`
	Finished int64  `json:"finished_at,omitempty"`
}

func toPullJSON(j pull.Job) pullJSON {
	out := pullJSON{ID: j.ID, Object: "model.pull", Source: j.Source, Name: j.Name, Status: j.Status, Bytes: j.Bytes, Total: j.Total,
		SHA256: j.SHA256, Resumed: j.Resumed, Error: j.Error, Started: j.Started.Unix()}
	if !j.Finished.IsZero() {
		out.Finished = j.Finished.Unix()
	}
	return out
}

// adminPull serves POST /admin/models/pull {"source": URL or hf:ORG/REPO/FILE.gguf,
// "sha256"?: HEX or "none"}: the gateway downloads the file into its models
// directory in the background (202); GET /admin/models/pulls shows how far it got.
func (s *server) adminPull(c *fiber.Ctx) error {
	var req struct {
		Source string `json:"source"`
		SHA256 string `json:"sha256"`
	}
	if err := oai.Decode(c.Body(), &req, ""); err != nil {
		return err
	}
	if req.Source == "" {
		return oai.Missing("source")
	}
	for _, f := range []struct{ name, v string }{{"source", req.Source}, {"sha256", req.SHA256}} {
		if e := oai.CheckText(f.name, f.v); e != nil {
			return e
		}
	}
	j, err := s.opts.Pulls.Start(req.Source, strings.ToLower(req.SHA256))
	switch {
	case errors.Is(err, pull.ErrBusy):
		return &oai.Error{Status: http.StatusConflict, Type: oai.TypeInvalidRequest, Code: oai.CodeConflict, Param: "source", Message: err.Error()}
	case err != nil:
		param := "source"
		if strings.Contains(err.Error(), "SHA-256") {
			param = "sha256"
		}
		return oai.Invalid(param, oai.CodeInvalidValue, "invalid '%s': %v", param, err)
	}
	s.log.Info("model pull started", "pull", j.ID, "file", j.Name, "by", actor(c)) // not the source: its query may hold a token
	return c.Status(fiber.StatusAccepted).JSON(toPullJSON(j))
}

// adminPulls serves GET /admin/models/pulls: the latest pulls, newest first.
func (s *server) adminPulls(c *fiber.Ctx) error {
	jobs := s.opts.Pulls.Jobs()
	out := make([]pullJSON, len(jobs))
	for i, j := range jobs {
		out[i] = toPullJSON(j)
	}
	return c.JSON(fiber.Map{"object": "list", "data": out})
}
