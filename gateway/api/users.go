package api

import (
	"net/url"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/accounts"
	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/oai"
)

// userRoutes mounts the admin pages' routes across users (scope admin): the users,
// their keys and sessions, and the usage per user and model.
func (s *server) userRoutes(app *fiber.App) {
	admin := s.requireScope(auth.ScopeAdmin)
	app.Get("/admin/users", admin, s.adminUsers)
	app.Get("/admin/users/:user/keys", admin, s.adminUserKeys)
	app.Delete("/admin/users/:user/keys/:prefix", admin, s.adminRevokeUserKey)
	app.Post("/admin/users/:user/signout-everywhere", admin, s.adminSignOutUser)
	app.Get("/admin/usage", admin, s.adminUsage)
}

type adminUserJSON struct {
	Object      string `json:"object"`
	Name        string `json:"name"`
	Admin       bool   `json:"admin"`
	HasPassword bool   `json:"has_password"`
	Keys        int    `json:"keys"`
	Sessions    int    `json:"sessions"`
	CreatedAt   int64  `json:"created_at"`
	LastUsedAt  int64  `json:"last_used_at,omitempty"`
}

// adminUsers serves GET /admin/users?limit=N&after=NAME: the users by name.
func (s *server) adminUsers(c *fiber.Ctx) error {
	p, aerr := pageOf(c, accounts.MaxUserPage)
	if aerr != nil {
		return aerr
	}
	if e := oai.CheckText("after", p.After); e != nil {
		return e
	}
	us, more, err := s.opts.Accounts.Users(c.UserContext(), accounts.Page(p))
	if err != nil {
		return err
	}
	return c.JSON(pageList(us, more, func(u accounts.User) adminUserJSON {
		out := adminUserJSON{Object: "user", Name: u.Name, Admin: u.Admin, HasPassword: u.HasPassword, Keys: u.Keys,
			Sessions: u.Sessions, CreatedAt: u.CreatedAt.Unix()}
		if !u.LastUsedAt.IsZero() {
			out.LastUsedAt = u.LastUsedAt.Unix()
		}
		return out
	}))
}

// pathUser resolves the :user parameter (a percent-encoded name).
func (s *server) pathUser(c *fiber.Ctx) (accounts.User, error) {
	name, err := url.PathUnescape(c.Params("user"))
	if err != nil {
		return accounts.User{}, oai.Invalid("user", oai.CodeInvalidValue, "the user in the path is not valid percent-encoding")
	}
	if e := oai.CheckText("user", name); e != nil {
		return accounts.User{}, e
	}
	u, err := s.opts.Accounts.User(c.UserContext(), name)
	return u, notFound(err, accounts.ErrNotFound, "user", name)
}

// adminUserKeys serves GET /admin/users/{user}/keys: the user's API keys, revoked
// ones too, oldest first.
func (s *server) adminUserKeys(c *fiber.Ctx) error {
	u, err := s.pathUser(c)
	if err != nil {
		return err
	}
	ks, err := s.opts.Accounts.Keys(c.UserContext(), u.ID)
	if err != nil {
		return err
	}
	return c.JSON(list(ks, toKeyJSON))
}

// adminRevokeUserKey serves DELETE /admin/users/{user}/keys/{prefix}.
func (s *server) adminRevokeUserKey(c *fiber.Ctx) error {
	u, err := s.pathUser(c)
	if err != nil {
		return err
	}
	prefix := c.Params("prefix")
	if !auth.ValidPrefix(prefix) {
		return oai.Invalid("prefix", oai.CodeInvalidValue, "a key's prefix looks like rgw_xxxxxxxx")
	}
	k, err := s.opts.Accounts.RevokeKey(c.UserContext(), u.ID, prefix)
	if err != nil {
		return notFound(err, accounts.ErrNotFound, "API key", prefix)
	}
	return c.JSON(toKeyJSON(k))
}

// adminSignOutUser serves POST /admin/users/{user}/signout-everywhere: every website
// session of the user ends (its keys stay).
func (s *server) adminSignOutUser(c *fiber.Ctx) error {
	u, err := s.pathUser(c)
	if err != nil {
		return err
	}
	if err := s.opts.Accounts.SignOutEverywhere(c.UserContext(), u.ID); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"object": "session.signed_out_everywhere", "user": u.Name})
}

type usageTotalJSON struct {
	User             string `json:"user"`
	Model            string `json:"model"`
	Requests         int64  `json:"requests"`
	PromptTokens     int64  `json:"prompt_tokens"`
	CompletionTokens int64  `json:"completion_tokens"`
	TotalTokens      int64  `json:"total_tokens"`
}

// adminUsage serves GET /admin/usage?days=N&limit=N: the requests and tokens of the
// last N days (default 30) per user and model, the most tokens first.
func (s *server) adminUsage(c *fiber.Ctx) error {
	days, limit := 30, 200
	for _, q := range []struct {
		name string
		to   *int
		max  int
	}{{"days", &days, accounts.MaxUsageDays}, {"limit", &limit, accounts.MaxUsageRows}} {
		if v := c.Query(q.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > q.max {
				return oai.Invalid(q.name, oai.CodeInvalidValue, "invalid value for '%s': '%s'; it must be between 1 and %d", q.name, v, q.max)
			}
			*q.to = n
		}
	}
	u, err := s.opts.Accounts.Usage(c.UserContext(), days, limit)
	if err != nil {
		return accountError(err)
	}
	out := pageList(u.Totals, u.HasMore, func(t accounts.UsageTotal) usageTotalJSON {
		return usageTotalJSON{User: t.UserName, Model: t.Model, Requests: t.Requests, PromptTokens: t.PromptTokens,
			CompletionTokens: t.CompletionTokens, TotalTokens: t.PromptTokens + t.CompletionTokens}
	})
	return c.JSON(struct {
		listJSON[usageTotalJSON]
		Since int64 `json:"since"`
	}{out, u.Since.Unix()})
}
