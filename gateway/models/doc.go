// Package models manages the models a gateway serves while it runs — FastChat's
// controller, in-process and shared through Postgres.
//
// A model comes from one source, which alone may change it:
//   - the config file (source "config" at start, "reload" when a reload added it):
//     changed by editing the file and reloading (SIGHUP, `ragway reload`, POST
//     /admin/reload);
//   - the admin API (source "admin"): added, replaced, scaled, re-aliased and
//     removed through Service, stored in Postgres (model_deployments) and applied by
//     every gateway on the database — at start, and through the change feed while
//     they run (Service.Sync).
//
// Every change goes through workers.Manager without a failed request (a new
// version starts beside the old, which finishes its requests), is checked like the
// config file's entries, and is recorded with who asked and what came of it
// (model_changes). Changes are made one at a time.
package models
