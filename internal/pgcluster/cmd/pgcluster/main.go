// Command pgcluster runs the project-local PostgreSQL cluster for the Taskfile:
//
//	pgcluster -dir .data/pg up                 init if needed, start, create db; print DATABASE_URL
//	pgcluster -dir .data/pg url                print DATABASE_URL
//	pgcluster -dir .data/pg psql-env           print PSQL_HOST=… PSQL_PORT=… PSQL_USER=… PSQL_PASS=… (for sqlboiler)
//	pgcluster -dir .data/pg down               stop the server (data kept)
//	pgcluster -dir .data/pg running            exit 0 when the server runs, 1 when not
//	pgcluster -db NAME recreate                drop database NAME if it exists, create it empty
//	pgcluster -db NAME drop                    drop database NAME if it exists
package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/ragway/ragway/internal/pgcluster"
)

func main() {
	dir := flag.String("dir", ".data/pg", "data directory")
	port := flag.Int("port", 0, "TCP port on 127.0.0.1 (0: the cluster's own, chosen when it is created: 54329 when free)")
	db := flag.String("db", "ragway", "database the URL names")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: pgcluster [-dir DIR] [-port N] [-db NAME] up|url|psql-env|down|running|recreate|drop")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := &pgcluster.Cluster{Dir: *dir, Port: *port}
	var err error
	switch flag.Arg(0) {
	case "up":
		var url string
		url, err = c.Up(ctx, *db)
		if err == nil {
			fmt.Println(url)
		}
	case "url":
		var url string
		url, err = c.URL(*db)
		if err == nil {
			fmt.Println(url)
		}
	case "psql-env":
		var url string
		if url, err = c.URL(*db); err == nil {
			err = printPSQLEnv(url)
		}
	case "down":
		err = c.Stop(ctx)
	case "running":
		if !c.Running(ctx) {
			os.Exit(1)
		}
	case "recreate", "drop":
		var admin string
		admin, err = c.URL("postgres")
		if err == nil {
			err = pgcluster.DropDatabase(ctx, admin, *db)
		}
		if err == nil && flag.Arg(0) == "recreate" {
			err = pgcluster.CreateDatabase(ctx, admin, *db, "")
		}
	default:
		err = fmt.Errorf("unknown command %q (up, url, psql-env, down, running, recreate or drop)", flag.Arg(0))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "db:", err)
		os.Exit(1)
	}
}

// printPSQLEnv prints the connection of url as the PSQL_* variables sqlboiler reads.
func printPSQLEnv(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	pw, _ := u.User.Password()
	fmt.Printf("PSQL_HOST=%s\nPSQL_PORT=%s\nPSQL_USER=%s\nPSQL_PASS=%s\nPSQL_DBNAME=%s\n",
		u.Hostname(), u.Port(), u.User.Username(), pw, strings.TrimPrefix(u.Path, "/"))
	return nil
}
