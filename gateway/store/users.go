package store

import (
	"context"

	"github.com/aarondl/sqlboiler/v4/boil"

	"github.com/ragway/ragway/db/models"
)

// EnsureUser returns the user called name, creating it if needed. Concurrent calls
// with one name return the same user.
func (s *Store) EnsureUser(ctx context.Context, name string) (User, error) {
	var u *models.User
	err := s.do(ctx, "ensure user", func(ctx context.Context) error {
		o := &models.User{Name: name}
		// INSERT ... ON CONFLICT (name) DO NOTHING RETURNING: no row (o.ID stays empty)
		// when the name is taken.
		err := o.Upsert(ctx, s.db, false, []string{models.UserColumns.Name}, boil.None(), boil.Infer())
		switch {
		case err != nil:
			return err
		case o.ID != "":
			u = o
			return nil
		}
		u, err = models.Users(models.UserWhere.Name.EQ(name)).One(ctx, s.db)
		return err
	})
	if err != nil {
		return User{}, err
	}
	return userFromModel(u), nil
}

// UserByName returns the user called name.
func (s *Store) UserByName(ctx context.Context, name string) (User, error) {
	var u *models.User
	err := s.do(ctx, "user by name", func(ctx context.Context) (err error) {
		u, err = models.Users(models.UserWhere.Name.EQ(name)).One(ctx, s.db)
		return err
	})
	if err != nil {
		return User{}, err
	}
	return userFromModel(u), nil
}

// CountUsers returns the number of users.
func (s *Store) CountUsers(ctx context.Context) (int, error) {
	var n int64
	err := s.do(ctx, "count users", func(ctx context.Context) (err error) {
		n, err = models.Users().Count(ctx, s.db)
		return err
	})
	return int(n), err
}

func userFromModel(u *models.User) User {
	return User{ID: u.ID, Name: u.Name, CreatedAt: u.CreatedAt, Admin: u.Admin}
}
