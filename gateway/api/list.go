package api

import (
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/oai"
	"github.com/ragway/ragway/gateway/store"
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

// pageList returns the listing of items, page p of a longer one: more may follow
// when the page is full.
func pageList[T, J any](items []T, p store.Page, show func(T) J) listJSON[J] {
	out := list(items, show)
	more := len(items) == p.Size()
	out.HasMore = &more
	return out
}

// pageOf reads a listing's ?limit=N&after=ID.
func pageOf(c *fiber.Ctx) (store.Page, *oai.Error) {
	p := store.Page{After: c.Query("after")}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxPageLimit {
			return p, oai.Invalid("limit", oai.CodeInvalidValue, "invalid value for 'limit': '%s'; it must be between 1 and %d", v, store.MaxPageLimit)
		}
		p.Limit = n
	}
	return p, nil
}
