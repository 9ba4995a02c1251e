package store

import (
	"context"
	"fmt"

	"github.com/aarondl/sqlboiler/v4/queries"
	"github.com/aarondl/sqlboiler/v4/types"
)

// recordUsageSQL inserts usage rows given as parallel arrays, in one statement.
const recordUsageSQL = `
INSERT INTO usage (user_id, api_key_id, model, route, prompt_tokens, completion_tokens)
SELECT u.user_id, NULLIF(u.api_key_id, '')::uuid, u.model, u.route, u.prompt_tokens, u.completion_tokens
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::integer[])
	AS u(user_id, api_key_id, model, route, prompt_tokens, completion_tokens)`

// RecordUsage stores usage rows (APIKeyID "": a request without a key), all or none,
// in one statement. A row of an unknown user or key is ErrNotFound.
func (s *Store) RecordUsage(ctx context.Context, rows ...Usage) error {
	if len(rows) == 0 {
		return nil
	}
	return s.do(ctx, "record usage", func(ctx context.Context) error {
		var users, keys, modelNames, routes types.StringArray
		var prompt, completion types.Int64Array
		for _, u := range rows {
			if !validID(u.UserID) || (u.APIKeyID != "" && !validID(u.APIKeyID)) {
				return fmt.Errorf("%w: user %q, api key %q", ErrNotFound, u.UserID, u.APIKeyID)
			}
			users, keys = append(users, u.UserID), append(keys, u.APIKeyID)
			modelNames, routes = append(modelNames, u.Model), append(routes, u.Route)
			prompt, completion = append(prompt, int64(u.PromptTokens)), append(completion, int64(u.CompletionTokens))
		}
		_, err := queries.Raw(recordUsageSQL, users, keys, modelNames, routes, prompt, completion).ExecContext(ctx, s.db)
		return err
	})
}
