package api

import (
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/oai"
)

// listJSON is the body of a listing: {"object": "list", "data": […]}, and for a paged
// listing "has_more".
type listJSON[J any] struct {
	Object  string `json:"object"`
	Data    []J    `json:"data"`
	HasMore *bool  `json:"has_more,omitempty"`
}

// list returns the listing of items, each shown by show.
func list[T, J any](items []T, show func(T) J) listJSON[J] {
	out := listJSON[J]{Object: "list", Data: make([]J, 0, len(items))}
	for _, it := range items {
		out.Data = append(out.Data, show(it))
	}
	return out
}

// pageList returns the listing of items, one page of a longer one: more says whether
// another page may follow.
func pageList[T, J any](items []T, more bool, show func(T) J) listJSON[J] {
	out := list(items, show)
	out.HasMore = &more
	return out
}

// page is a listing's ?limit=N&after=ID (the services' Page types have its fields).
type page struct {
	Limit int // 0: the service's default
	After string
}

// pageOf reads a listing's ?limit=N&after=ID; limit is between 1 and maxLimit.
func pageOf(c *fiber.Ctx, maxLimit int) (page, *oai.Error) {
	p := page{After: c.Query("after")}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return p, oai.Invalid("limit", oai.CodeInvalidValue, "invalid value for 'limit': '%s'; it must be between 1 and %d", v, maxLimit)
		}
		p.Limit = n
	}
	return p, nil
}
