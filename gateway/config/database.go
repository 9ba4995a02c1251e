package config

import "errors"

// ErrNoDatabase is returned by [Config.ResolveDatabaseURL] when no database is
// configured.
var ErrNoDatabase = errors.New("no database configured: set database_url in the config file, " +
	"or RAGWAY_DATABASE_URL / DATABASE_URL (task db:up starts a local Postgres and prints its URL)")

// ResolveDatabaseURL returns the Postgres URL to use: database_url (from the file or
// RAGWAY_DATABASE_URL) if set, else getenv("DATABASE_URL"), else ErrNoDatabase.
func (c *Config) ResolveDatabaseURL(getenv func(string) string) (string, error) {
	if c.DatabaseURL != "" {
		return c.DatabaseURL, nil
	}
	if getenv != nil {
		if u := getenv("DATABASE_URL"); u != "" {
			return u, nil
		}
	}
	return "", ErrNoDatabase
}
