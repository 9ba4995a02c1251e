package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aarondl/null/v8"
	"github.com/aarondl/sqlboiler/v4/boil"
	"github.com/aarondl/sqlboiler/v4/queries"
	"github.com/aarondl/sqlboiler/v4/queries/qm"
	"github.com/lib/pq"

	"github.com/ragway/ragway/db/models"
)

// Credentials are what signing in checks: the user and its password hash ("": none).
type Credentials struct {
	User         User
	PasswordHash string
}

// UserCredentials returns the credentials of the user called name (ErrNotFound if
// there is none).
func (s *Store) UserCredentials(ctx context.Context, name string) (Credentials, error) {
	var u *models.User
	err := s.do(ctx, "user credentials", func(ctx context.Context) (err error) {
		u, err = models.Users(models.UserWhere.Name.EQ(name)).One(ctx, s.db)
		return err
	})
	if err != nil {
		return Credentials{}, err
	}
	return Credentials{User: userFromModel(u), PasswordHash: u.PasswordHash.String}, nil
}

// SetPassword sets the password hash of the user called name, creating the user if
// needed; admin, when not nil, makes it an admin of the site or not. Every session of
// the user is revoked (on every gateway).
func (s *Store) SetPassword(ctx context.Context, name, hash string, admin *bool) (User, error) {
	u, err := s.EnsureUser(ctx, name)
	if err != nil {
		return User{}, err
	}
	err = s.do(ctx, "set password", func(ctx context.Context) error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		set := models.M{models.UserColumns.PasswordHash: null.StringFrom(hash)}
		if admin != nil {
			set[models.UserColumns.Admin] = *admin
		}
		if _, err := models.Users(models.UserWhere.ID.EQ(u.ID)).UpdateAll(ctx, tx, set); err != nil {
			return err
		}
		// A new password (or role) ends every session of the old one.
		if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = now() WHERE user_id = $1 AND kind = 'session' AND revoked_at IS NULL`, u.ID); err != nil {
			return err
		}
		return tx.Commit()
	})
	if err != nil {
		return User{}, err
	}
	if admin != nil {
		u.Admin = *admin
	}
	return u, nil
}

// NewAccount is what SignUp stores.
type NewAccount struct {
	Name         string
	PasswordHash string
	// InviteHash, when set, is the SHA-256 of the invitation the account uses: it
	// must be unused, unexpired and, when it names one, for Name; it is used up, and
	// the account is an admin when the invitation says so.
	InviteHash []byte
}

// Errors of SignUp.
var (
	// ErrInviteInvalid: no such invitation, or used, or lapsed, or for another name.
	ErrInviteInvalid = errors.New("the invitation is not valid")
)

// SignUp creates a user with a password, using up an invitation when given, in one
// transaction. A name already taken is ErrConflict (nothing is used up).
func (s *Store) SignUp(ctx context.Context, a NewAccount) (User, error) {
	var u *models.User
	err := s.do(ctx, "sign up", func(ctx context.Context) error {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		admin := false
		var inviteID string
		if a.InviteHash != nil {
			var name sql.NullString
			var expires time.Time
			var used sql.NullTime
			err := tx.QueryRowContext(ctx, `SELECT id, name, admin, expires_at, used_at FROM invites WHERE hash = $1 FOR UPDATE`,
				a.InviteHash).Scan(&inviteID, &name, &admin, &expires, &used)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				return ErrInviteInvalid
			case err != nil:
				return err
			case used.Valid || !time.Now().Before(expires) || name.Valid && name.String != a.Name:
				return ErrInviteInvalid
			}
		}
		u = &models.User{Name: a.Name, PasswordHash: null.StringFrom(a.PasswordHash), Admin: admin}
		if err := u.Insert(ctx, tx, boil.Infer()); err != nil {
			return err
		}
		if inviteID != "" {
			if _, err := tx.ExecContext(ctx, `UPDATE invites SET used_at = now(), used_by = $2 WHERE id = $1`, inviteID, u.ID); err != nil {
				return err
			}
		}
		return tx.Commit()
	})
	if err != nil {
		return User{}, err
	}
	return userFromModel(u), nil
}

// NewInvite is an invitation to store.
type NewInvite struct {
	Hash []byte
	// Name, when set, is the name the invited person must take.
	Name      string
	Admin     bool
	CreatedBy string // a user id, or ""
	ExpiresAt time.Time
}

// CreateInvite stores an invitation.
func (s *Store) CreateInvite(ctx context.Context, in NewInvite) error {
	return s.do(ctx, "create invite", func(ctx context.Context) error {
		if len(in.Hash) != 32 || in.CreatedBy != "" && !validID(in.CreatedBy) {
			return fmt.Errorf("%w: invite", ErrInvalid)
		}
		if err := checkTexts("name", in.Name); err != nil {
			return err
		}
		o := &models.Invite{Hash: in.Hash, Name: null.NewString(in.Name, in.Name != ""), Admin: in.Admin,
			CreatedBy: null.NewString(in.CreatedBy, in.CreatedBy != ""), ExpiresAt: in.ExpiresAt}
		return o.Insert(ctx, s.db, boil.Infer())
	})
}

// RevokeSessions revokes every unrevoked session of user userID (not its keys) and
// returns how many: signing out everywhere. Each revocation reaches every gateway
// through the change feed.
func (s *Store) RevokeSessions(ctx context.Context, userID string) (int, error) {
	var n int64
	err := s.do(ctx, "revoke sessions", func(ctx context.Context) error {
		if !validID(userID) {
			return ErrNotFound
		}
		res, err := s.db.ExecContext(ctx, `UPDATE api_keys SET revoked_at = now()
			WHERE user_id = $1 AND kind = 'session' AND revoked_at IS NULL`, userID)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// UserKeys lists user userID's keys of kind kind, oldest first.
func (s *Store) UserKeys(ctx context.Context, userID, kind string) ([]APIKey, error) {
	var rows []*keyRow
	err := s.do(ctx, "user keys", func(ctx context.Context) error {
		if !validID(userID) {
			return ErrNotFound
		}
		return keysWithUser(models.APIKeyWhere.UserID.EQ(userID), models.APIKeyWhere.Kind.EQ(kind),
			qm.OrderBy(`"api_keys"."created_at", "api_keys"."id"`)).Bind(ctx, s.db, &rows)
	})
	if err != nil {
		return nil, err
	}
	return convert(rows, (*keyRow).domain), nil
}

// RevokeUserKey revokes user userID's key (of kind key) with that prefix: another
// user's key, or a session, is ErrNotFound.
func (s *Store) RevokeUserKey(ctx context.Context, userID, prefix string) (APIKey, error) {
	var row keyRow
	err := s.do(ctx, "revoke user key", func(ctx context.Context) error {
		if !validID(userID) {
			return ErrNotFound
		}
		return queries.Raw(`WITH k AS (
	UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE prefix = $1 AND user_id = $2 AND kind = 'key' RETURNING *
)
SELECT k.*, u.name AS user_name FROM k JOIN users u ON u.id = k.user_id`, prefix, userID).Bind(ctx, s.db, &row)
	})
	if err != nil {
		return APIKey{}, err
	}
	return row.domain(), nil
}

// ReserveAttempt counts an attempt (a sign-in, a sign-up) for each of keys, unless
// one of them already has limits[i] or more within the window: then nothing is
// counted, and retryAfter says when the oldest of that key's attempts leaves the
// window. Concurrent reservations for one key take turns (an advisory lock), so no
// burst of attempts gets past a limit. The ids are the rows counted: ForgetAttempts
// takes back an attempt that succeeded.
func (s *Store) ReserveAttempt(ctx context.Context, keys []string, limits []int) (ids []int64, retryAfter time.Duration, err error) {
	window := fmt.Sprintf("%d seconds", int(attemptWindow.Seconds()))
	err = s.do(ctx, "reserve an attempt", func(ctx context.Context) error {
		ids, retryAfter = nil, 0
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		sorted := slices.Clone(keys)
		slices.Sort(sorted)
		for _, k := range slices.Compact(sorted) {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 7296847419113734003))`, k); err != nil {
				return err
			}
		}
		for i, k := range keys {
			var n int
			var oldest sql.NullTime
			var now time.Time
			if err := tx.QueryRowContext(ctx, `SELECT count(*), min(at), now() FROM signin_failures WHERE key = $1 AND at > now() - $2::interval`,
				k, window).Scan(&n, &oldest, &now); err != nil {
				return err
			}
			if n >= limits[i] {
				retryAfter = max(oldest.Time.Add(attemptWindow).Sub(now), time.Second)
				return nil
			}
		}
		rows, err := tx.QueryContext(ctx, `WITH gone AS (DELETE FROM signin_failures WHERE at < now() - $2::interval)
			INSERT INTO signin_failures (key) SELECT unnest($1::text[]) RETURNING id`, pq.Array(keys), window)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		return tx.Commit()
	})
	return ids, retryAfter, err
}

// ForgetAttempts takes back the attempts ids (they succeeded), and every counted
// attempt of the keys forget (a name signed in with its password).
func (s *Store) ForgetAttempts(ctx context.Context, ids []int64, forget ...string) error {
	return s.do(ctx, "forget attempts", func(ctx context.Context) error {
		_, err := s.db.ExecContext(ctx, `DELETE FROM signin_failures WHERE id = ANY($1) OR key = ANY($2)`, pq.Array(ids), pq.Array(forget))
		return err
	})
}

// attemptWindow is how far back attempts count.
const attemptWindow = 15 * time.Minute

// InviteUsable reports, without using it, whether the invitation whose code hashes
// to hash can sign up name: ErrInviteInvalid if not.
func (s *Store) InviteUsable(ctx context.Context, hash []byte, name string) error {
	return s.do(ctx, "check an invitation", func(ctx context.Context) error {
		var ok bool
		err := s.db.QueryRowContext(ctx, `SELECT true FROM invites WHERE hash = $1 AND used_at IS NULL AND expires_at > now()
			AND (name IS NULL OR name = $2)`, hash, name).Scan(&ok)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrInviteInvalid
		}
		return err
	})
}
