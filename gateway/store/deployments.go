package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aarondl/null/v8"
	"github.com/aarondl/sqlboiler/v4/boil"
	"github.com/aarondl/sqlboiler/v4/queries/qm"
	"github.com/aarondl/sqlboiler/v4/types"

	"github.com/ragway/ragway/db/models"
)

// ModelDeployment is a model added through the admin API: every gateway on the
// database serves it. Config is the model's entry, as JSON (the config file's
// schema; the store does not read it).
type ModelDeployment struct {
	Name                 string
	Config               json.RawMessage
	CreatedBy, UpdatedBy string
	CreatedAt, UpdatedAt time.Time
}

// ModelChange is one change to the models a gateway serves, as recorded: who asked
// (Actor), which gateway made it (Gateway: its origin; set by the store), what
// (Action, Model, Config), when, and whether it worked (OK, Error).
type ModelChange struct {
	ID                            int64
	At                            time.Time
	Actor, Gateway, Action, Model string
	Config                        json.RawMessage // nil: none
	OK                            bool
	Error                         string
}

// Model change actions.
const (
	ModelAdded    = "add"
	ModelReplaced = "replace"
	ModelRemoved  = "remove"
	ModelScaled   = "scale"
	ModelAliased  = "alias"
	ModelReloaded = "reload" // the config file re-read
	ModelApplied  = "apply"  // a gateway applying another's change
)

// ModelDeployments returns every deployment, by name.
func (s *Store) ModelDeployments(ctx context.Context) ([]ModelDeployment, error) {
	var out []ModelDeployment
	err := s.do(ctx, "list model deployments", func(ctx context.Context) error {
		rows, err := models.ModelDeployments(qm.OrderBy(models.ModelDeploymentColumns.Name)).All(ctx, s.db)
		if err != nil {
			return err
		}
		out = make([]ModelDeployment, len(rows))
		for i, r := range rows {
			out[i] = ModelDeployment{Name: r.Name, Config: json.RawMessage(r.Config), CreatedBy: r.CreatedBy, UpdatedBy: r.UpdatedBy,
				CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
		}
		return nil
	})
	return out, err
}

// PutModelDeployments stores deployments (new ones, or new configs for existing
// ones: several at once when an alias moves between two) and records c, in one
// transaction: every gateway on the database applies them together. actor is who
// asked. With create, the deployments must be new: one that exists is ErrConflict
// (two gateways adding the same name at once), and nothing is stored.
func (s *Store) PutModelDeployments(ctx context.Context, actor string, ds []ModelDeployment, c ModelChange, create bool) error {
	return s.do(ctx, "put model deployments", func(ctx context.Context) error {
		for _, d := range ds {
			if err := checkTexts("name", d.Name, "actor", actor); err != nil {
				return err
			}
			if !json.Valid(d.Config) {
				return fmt.Errorf("%w: model %q: config is not JSON", ErrInvalid, d.Name)
			}
		}
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() // a no-op after Commit
		for _, d := range ds {
			row := &models.ModelDeployment{Name: d.Name, Config: types.JSON(d.Config), CreatedBy: actor, UpdatedBy: actor,
				UpdatedAt: time.Now()}
			if create {
				// A unique violation is ErrConflict (classify).
				if err := row.Insert(ctx, tx, boil.Whitelist(models.ModelDeploymentColumns.Name, models.ModelDeploymentColumns.Config,
					models.ModelDeploymentColumns.CreatedBy, models.ModelDeploymentColumns.UpdatedBy)); err != nil {
					return err
				}
				continue
			}
			err := row.Upsert(ctx, tx, true, []string{models.ModelDeploymentColumns.Name},
				boil.Whitelist(models.ModelDeploymentColumns.Config, models.ModelDeploymentColumns.UpdatedBy, models.ModelDeploymentColumns.UpdatedAt),
				boil.Whitelist(models.ModelDeploymentColumns.Name, models.ModelDeploymentColumns.Config,
					models.ModelDeploymentColumns.CreatedBy, models.ModelDeploymentColumns.UpdatedBy))
			if err != nil {
				return err
			}
		}
		if err := insertModelChange(ctx, tx, c); err != nil {
			return err
		}
		return tx.Commit()
	})
}

// DeleteModelDeployment deletes the deployment called name (ErrNotFound if there is
// none) and records c, in one transaction.
func (s *Store) DeleteModelDeployment(ctx context.Context, name string, c ModelChange) error {
	return s.do(ctx, "delete model deployment", func(ctx context.Context) error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() // a no-op after Commit
		n, err := models.ModelDeployments(models.ModelDeploymentWhere.Name.EQ(name)).DeleteAll(ctx, tx)
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		if err := insertModelChange(ctx, tx, c); err != nil {
			return err
		}
		return tx.Commit()
	})
}

// RecordModelChange records c: a change that stored nothing (failed, or to models
// not stored here: the config file's).
func (s *Store) RecordModelChange(ctx context.Context, c ModelChange) error {
	return s.do(ctx, "record model change", func(ctx context.Context) error {
		return insertModelChange(ctx, s.db, c)
	})
}

func insertModelChange(ctx context.Context, exec boil.ContextExecutor, c ModelChange) error {
	if err := checkTexts("actor", c.Actor, "model", c.Model, "error", c.Error); err != nil {
		return err
	}
	row := &models.ModelChange{Actor: c.Actor, Action: c.Action, Model: c.Model, Ok: c.OK, Error: c.Error}
	if c.Config != nil {
		row.Config = null.JSONFrom(c.Config)
	}
	// at and gateway come from the database: its clock, the session's origin.
	return row.Insert(ctx, exec, boil.Whitelist(models.ModelChangeColumns.Actor, models.ModelChangeColumns.Action,
		models.ModelChangeColumns.Model, models.ModelChangeColumns.Config, models.ModelChangeColumns.Ok, models.ModelChangeColumns.Error))
}

// ModelChanges returns the latest limit (1–1000) model changes, newest first.
func (s *Store) ModelChanges(ctx context.Context, limit int) ([]ModelChange, error) {
	limit = min(max(limit, 1), 1000)
	var out []ModelChange
	err := s.do(ctx, "list model changes", func(ctx context.Context) error {
		rows, err := models.ModelChanges(qm.OrderBy(models.ModelChangeColumns.ID+" DESC"), qm.Limit(limit)).All(ctx, s.db)
		if err != nil {
			return err
		}
		out = make([]ModelChange, len(rows))
		for i, r := range rows {
			c := ModelChange{ID: r.ID, At: r.At, Actor: r.Actor, Gateway: r.Gateway, Action: r.Action, Model: r.Model, OK: r.Ok, Error: r.Error}
			if r.Config.Valid {
				c.Config = json.RawMessage(r.Config.JSON)
			}
			out[i] = c
		}
		return nil
	})
	return out, err
}
