package pgcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Superuser is the name of the cluster's superuser role.
const Superuser = "ragway"

// passwordFile holds the superuser's password, and portFile the port chosen at Init,
// inside the data directory.
const (
	passwordFile = "ragway.password"
	portFile     = "ragway.port"
)

// PreferredPort is the port a new cluster takes when it is free.
const PreferredPort = 54329

// Project returns the project-local cluster of the repository at root (the one
// `task db:up` runs): root/.data/pg, on port RAGWAY_PG_PORT when that is set, else the
// cluster's own.
func Project(root string) (*Cluster, error) {
	c := &Cluster{Dir: filepath.Join(root, ".data", "pg")}
	if p := os.Getenv("RAGWAY_PG_PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("RAGWAY_PG_PORT=%q is not a TCP port", p)
		}
		c.Port = n
	}
	return c, nil
}

// UpProject starts the project-local cluster of the repository at root (creating it
// on first use) and returns the URL of its "postgres" database. Processes that call it
// at once (test binaries of several packages) take turns on a lock file.
func UpProject(ctx context.Context, root string) (string, error) {
	c, err := Project(root)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Join(root, ".data"), 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(root, ".data", "pg.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	return c.Up(ctx, "postgres")
}

// port returns the port to use: c.Port, else the one Init kept in Dir.
func (c *Cluster) port() (int, error) {
	if c.Port != 0 {
		return c.Port, nil
	}
	b, err := os.ReadFile(filepath.Join(c.Dir, portFile))
	if err != nil {
		return 0, fmt.Errorf("the port of the cluster in %s (is it a cluster made by task db:up?): %w", c.Dir, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", filepath.Join(c.Dir, portFile), err)
	}
	return n, nil
}

// choosePort returns PreferredPort when nothing listens on it, else a free port.
func choosePort() (int, error) {
	for _, p := range []int{PreferredPort, 0} {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err == nil {
			port := ln.Addr().(*net.TCPAddr).Port
			ln.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free TCP port on 127.0.0.1")
}

// Cluster is one project-local PostgreSQL cluster.
type Cluster struct {
	// Dir is the data directory (created by Init).
	Dir string
	// Port is the TCP port on 127.0.0.1. 0: the cluster's own, chosen at Init
	// (PreferredPort when it is free, else any free port) and kept in Dir.
	Port int
	// BinDir holds initdb and pg_ctl; empty: [FindBinDir].
	BinDir string
}

// FindBinDir returns the directory of the newest installed PostgreSQL server binaries
// (/usr/lib/postgresql/N/bin on Debian), or an error saying how to install them.
func FindBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) < majorOf(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server binaries (initdb) under /usr/lib/postgresql/*/bin or in PATH: run `task setup` (installs the Debian package postgresql)")
}

func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func (c *Cluster) bin(name string) (string, error) {
	if c.BinDir == "" {
		d, err := FindBinDir()
		if err != nil {
			return "", err
		}
		c.BinDir = d
	}
	return filepath.Join(c.BinDir, name), nil
}

// asServerUser returns the command line that runs argv as the user owning the
// cluster: argv itself, or under `runuser -u postgres` when we are root.
func asServerUser(argv ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		argv = append([]string{"runuser", "-u", "postgres", "--"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = "/"
	return cmd
}

func run(ctx context.Context, cmd *exec.Cmd) error {
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", cmd.Args[0], err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(out.String()))
		}
		return nil
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s: %w", strings.Join(cmd.Args, " "), ctx.Err())
	}
}

// Initialized reports whether Dir holds a cluster made by Init.
func (c *Cluster) Initialized() bool {
	_, err1 := os.Stat(filepath.Join(c.Dir, "PG_VERSION"))
	_, err2 := os.Stat(filepath.Join(c.Dir, passwordFile))
	return err1 == nil && err2 == nil
}

// Init creates the cluster in Dir unless it exists. Dir's parent must exist; Dir
// itself must be absent or empty.
func (c *Cluster) Init(ctx context.Context) error {
	if c.Initialized() {
		return nil
	}
	initdb, err := c.bin("initdb")
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return err
	}
	c.Dir = dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	pw := make([]byte, 18)
	if _, err := rand.Read(pw); err != nil {
		return err
	}
	password := hex.EncodeToString(pw)
	// initdb reads the password from a file the server user can read; it is
	// written into the data directory afterwards, where only that user (and root) can.
	tmp, err := os.CreateTemp("", "ragway-pgpass-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(password + "\n"); err != nil {
		return err
	}
	tmp.Close()
	if os.Geteuid() == 0 {
		if err := chownServerUser(dir, tmp.Name()); err != nil {
			return err
		}
		// Every directory above the data directory must be traversable by the server user.
		if err := ensureTraversable(filepath.Dir(dir)); err != nil {
			return err
		}
	}
	if err := run(ctx, asServerUser(initdb, "-D", dir, "-U", Superuser, "--pwfile", tmp.Name(),
		"--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions")); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	port := c.Port
	if port == 0 {
		if port, err = choosePort(); err != nil {
			return err
		}
	}
	conf := fmt.Sprintf("\n# ragway project-local cluster\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = ''\nmax_connections = 200\nlogging_collector = off\n", port)
	f, err := os.OpenFile(filepath.Join(dir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(conf); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	portPath := filepath.Join(dir, portFile)
	if err := os.WriteFile(portPath, []byte(strconv.Itoa(port)+"\n"), 0o644); err != nil {
		return err
	}
	// Written last: Initialized checks for it.
	pwPath := filepath.Join(dir, passwordFile)
	if err := os.WriteFile(pwPath, []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		return chownServerUser(pwPath, portPath)
	}
	return nil
}

func chownServerUser(paths ...string) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("the postgres system user is missing (it comes with the Debian package postgresql; run `task setup`): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, p := range paths {
		if err := os.Chown(p, uid, gid); err != nil {
			return fmt.Errorf("chown %s to postgres: %w", p, err)
		}
	}
	return nil
}

// ensureTraversable makes dir and its parents searchable by others (o+x) where they
// are not, so the server user can reach the data directory.
func ensureTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, st.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("make %s traversable for the postgres user: %w", d, err)
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// Password returns the superuser's password.
func (c *Cluster) Password() (string, error) {
	b, err := os.ReadFile(filepath.Join(c.Dir, passwordFile))
	if err != nil {
		return "", fmt.Errorf("read the cluster password (is %s a cluster made by task db:up?): %w", c.Dir, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// URL returns the DATABASE_URL of database db on this cluster.
func (c *Cluster) URL(db string) (string, error) {
	pw, err := c.Password()
	if err != nil {
		return "", err
	}
	port, err := c.port()
	if err != nil {
		return "", err
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(Superuser, pw),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String(), nil
}

// absDir makes Dir absolute: the server's commands run in / (as another user).
func (c *Cluster) absDir() {
	if d, err := filepath.Abs(c.Dir); err == nil {
		c.Dir = d
	}
}

// Running reports whether the server of this data directory is running.
func (c *Cluster) Running(ctx context.Context) bool {
	c.absDir()
	pgctl, err := c.bin("pg_ctl")
	if err != nil {
		return false
	}
	return run(ctx, asServerUser(pgctl, "status", "-D", c.Dir)) == nil
}

// Start starts the server (a no-op when it runs) and waits until it accepts
// connections.
func (c *Cluster) Start(ctx context.Context) error {
	c.absDir()
	if !c.Initialized() {
		return fmt.Errorf("%s is not a cluster: run Init first", c.Dir)
	}
	if c.Running(ctx) {
		return nil
	}
	pgctl, err := c.bin("pg_ctl")
	if err != nil {
		return err
	}
	port, err := c.port()
	if err != nil {
		return err
	}
	logPath := filepath.Join(c.Dir, "server.log")
	// -o -p: a port given now wins over the one written at Init.
	err = run(ctx, asServerUser(pgctl, "start", "-D", c.Dir, "-l", logPath, "-w", "-t", "60",
		"-o", "-p "+strconv.Itoa(port)))
	if err != nil {
		tail, _ := os.ReadFile(logPath)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return fmt.Errorf("start postgres on 127.0.0.1:%d: %w\n%s", port, err, tail)
	}
	return nil
}

// Stop stops the server (fast shutdown: open sessions are ended, committed data is
// kept). A no-op when it is not running.
func (c *Cluster) Stop(ctx context.Context) error { return c.stop(ctx, "fast") }

// Crash stops the server the way a crash would (immediate shutdown: no checkpoint,
// WAL not yet flushed is lost); the next Start runs crash recovery.
func (c *Cluster) Crash(ctx context.Context) error { return c.stop(ctx, "immediate") }

// stop stops a running server with pg_ctl's shutdown mode.
func (c *Cluster) stop(ctx context.Context, mode string) error {
	c.absDir()
	if !c.Initialized() || !c.Running(ctx) {
		return nil
	}
	pgctl, err := c.bin("pg_ctl")
	if err != nil {
		return err
	}
	return run(ctx, asServerUser(pgctl, "stop", "-D", c.Dir, "-m", mode, "-w", "-t", "60"))
}

// Up initializes the cluster if needed, starts it and makes sure database db exists.
// It returns db's URL.
func (c *Cluster) Up(ctx context.Context, db string) (string, error) {
	if err := c.Init(ctx); err != nil {
		return "", err
	}
	if err := c.Start(ctx); err != nil {
		return "", err
	}
	if err := c.CreateDatabase(ctx, db); err != nil {
		return "", err
	}
	return c.URL(db)
}

// CreateDatabase creates database db unless it exists.
func (c *Cluster) CreateDatabase(ctx context.Context, db string) error {
	url, err := c.URL("postgres")
	if err != nil {
		return err
	}
	return CreateDatabase(ctx, url, db, "")
}

// WaitReady polls until the server accepts a connection or ctx ends.
func (c *Cluster) WaitReady(ctx context.Context) error {
	port, err := c.port()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres at %s: %w", addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
