package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/aarondl/null/v8"
	"github.com/aarondl/sqlboiler/v4/boil"
	"github.com/aarondl/sqlboiler/v4/queries"
	"github.com/aarondl/sqlboiler/v4/queries/qm"

	"github.com/ragway/ragway/db/models"
)

// CreateAPIKey stores a key. Its scopes must be a non-empty subset of ScopeChat,
// ScopeIngest and ScopeAdmin (else ErrInvalid); a prefix in use is ErrConflict, an
// unknown user ErrNotFound.
func (s *Store) CreateAPIKey(ctx context.Context, k NewAPIKey) (APIKey, error) {
	var row keyRow
	err := s.do(ctx, "create api key", func(ctx context.Context) error {
		if err := checkScopes(k.Scopes); err != nil {
			return err
		}
		if !validID(k.UserID) {
			return fmt.Errorf("%w: user %q", ErrNotFound, k.UserID)
		}
		o := &models.APIKey{
			UserID:    k.UserID,
			Prefix:    k.Prefix,
			Hash:      k.Hash,
			Name:      k.Name,
			Scopes:    k.Scopes,
			RPMLimit:  null.NewInt(k.RPMLimit, k.RPMLimit != 0),
			TPMLimit:  null.NewInt(k.TPMLimit, k.TPMLimit != 0),
			Kind:      cmp.Or(k.Kind, KindKey),
			ExpiresAt: null.NewTime(k.ExpiresAt, !k.ExpiresAt.IsZero()),
		}
		if err := o.Insert(ctx, s.db, boil.Infer()); err != nil {
			return err
		}
		return keysWithUser(models.APIKeyWhere.ID.EQ(o.ID)).Bind(ctx, s.db, &row)
	})
	if err != nil {
		return APIKey{}, err
	}
	return row.domain(), nil
}

// checkScopes rejects an empty scope list and unknown scopes.
func checkScopes(scopes []string) error {
	if len(scopes) == 0 {
		return fmt.Errorf("%w: an api key needs at least one scope", ErrInvalid)
	}
	for _, sc := range scopes {
		if !slices.Contains([]string{ScopeChat, ScopeIngest, ScopeAdmin}, sc) {
			return fmt.Errorf("%w: unknown scope %q (known: %s, %s, %s)", ErrInvalid, sc, ScopeChat, ScopeIngest, ScopeAdmin)
		}
	}
	return nil
}

// APIKeyByPrefix returns the key with that prefix (revoked ones included), with its
// user's name.
func (s *Store) APIKeyByPrefix(ctx context.Context, prefix string) (APIKey, error) {
	var row keyRow
	err := s.do(ctx, "api key by prefix", func(ctx context.Context) error {
		// Every request looks its key up: a prepared statement, one round trip.
		stmt, err := s.prepared(ctx, keyByPrefixSQL)
		if err != nil {
			return err
		}
		rows, err := stmt.QueryContext(ctx, prefix)
		if err != nil {
			return err
		}
		defer rows.Close()
		return queries.Bind(rows, &row)
	})
	if err != nil {
		return APIKey{}, err
	}
	return row.domain(), nil
}

// ListAPIKeys lists the keys of the user called userName ("" : every user's), oldest
// first. An unknown user is ErrNotFound.
func (s *Store) ListAPIKeys(ctx context.Context, userName string) ([]APIKey, error) {
	var rows []*keyRow
	err := s.do(ctx, "list api keys", func(ctx context.Context) error {
		mods := []qm.QueryMod{models.APIKeyWhere.Kind.EQ(KindKey), qm.OrderBy(`"api_keys"."created_at", "api_keys"."id"`)}
		if userName != "" {
			u, err := models.Users(models.UserWhere.Name.EQ(userName)).One(ctx, s.db)
			if err != nil {
				return err
			}
			mods = append(mods, models.APIKeyWhere.UserID.EQ(u.ID))
		}
		return keysWithUser(mods...).Bind(ctx, s.db, &rows)
	})
	if err != nil {
		return nil, err
	}
	return convert(rows, (*keyRow).domain), nil
}

// revokeKeySQL sets revoked_at unless set (the first revocation time stays) and
// returns the key with its user's name.
const revokeKeySQL = `
WITH k AS (
	UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE prefix = $1 RETURNING *
)
SELECT k.*, u.name AS user_name FROM k JOIN users u ON u.id = k.user_id`

// RevokeAPIKey revokes the key with that prefix and returns it. Revoking a revoked
// key keeps its first revocation time. An unknown prefix is ErrNotFound.
func (s *Store) RevokeAPIKey(ctx context.Context, prefix string) (APIKey, error) {
	var row keyRow
	err := s.do(ctx, "revoke api key", func(ctx context.Context) error {
		return queries.Raw(revokeKeySQL, prefix).Bind(ctx, s.db, &row)
	})
	if err != nil {
		return APIKey{}, err
	}
	return row.domain(), nil
}

// TouchAPIKey sets the key's last use. An unknown id is ErrNotFound.
func (s *Store) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	return s.do(ctx, "touch api key", func(ctx context.Context) error {
		if !validID(id) {
			return ErrNotFound
		}
		n, err := models.APIKeys(models.APIKeyWhere.ID.EQ(id)).
			UpdateAll(ctx, s.db, models.M{models.APIKeyColumns.LastUsedAt: at})
		if err == nil && n == 0 {
			err = ErrNotFound
		}
		return err
	})
}

// keyRow is an api_keys row with its user's name, as keysWithUser and revokeKeySQL
// select it.
type keyRow struct {
	models.APIKey `boil:",bind"`
	UserName      string     `boil:"user_name"`
	DailyQuota    null.Int64 `boil:"daily_token_quota"`
	MonthlyQuota  null.Int64 `boil:"monthly_token_quota"`
}

// keyByPrefixSQL is keysWithUser for one prefix, as SQL to prepare.
const keyByPrefixSQL = `SELECT "api_keys".*, "users"."name" AS "user_name", "users"."daily_token_quota", "users"."monthly_token_quota" FROM "api_keys"
INNER JOIN "users" ON "users"."id" = "api_keys"."user_id" WHERE "api_keys"."prefix" = $1`

// keysWithUser selects keys (filtered and ordered by mods) with their user's name.
func keysWithUser(mods ...qm.QueryMod) *queries.Query {
	return models.NewQuery(append([]qm.QueryMod{
		qm.Select(`"api_keys".*`, `"users"."name" AS "user_name"`, `"users"."daily_token_quota"`, `"users"."monthly_token_quota"`),
		qm.From(`"api_keys"`),
		qm.InnerJoin(`"users" ON "users"."id" = "api_keys"."user_id"`),
	}, mods...)...)
}

func (r *keyRow) domain() APIKey {
	k := r.APIKey
	return APIKey{
		ID:         k.ID,
		UserID:     k.UserID,
		UserName:   r.UserName,
		Prefix:     k.Prefix,
		Hash:       k.Hash,
		Name:       k.Name,
		Scopes:     k.Scopes,
		RPMLimit:   k.RPMLimit.Int,
		TPMLimit:   k.TPMLimit.Int,
		CreatedAt:  k.CreatedAt,
		LastUsedAt: k.LastUsedAt.Time,
		RevokedAt:  k.RevokedAt.Time,
		Kind:       k.Kind,
		ExpiresAt:  k.ExpiresAt.Time,

		DailyTokenQuota:   r.DailyQuota.Int64,
		MonthlyTokenQuota: r.MonthlyQuota.Int64,
	}
}
