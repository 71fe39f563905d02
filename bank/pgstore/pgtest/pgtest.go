// Package pgtest starts throwaway PostgreSQL servers for tests: initdb into
// a fresh temporary directory, pg_ctl start listening only on a unix socket
// in that directory, a database or a schema per test, and pg_ctl stop and removal of
// the directory at the end. No pre-existing database is needed, only the
// server binaries (initdb, pg_ctl, postgres), found in $BLINDBANK_PG_BIN if
// set, else on PATH or under /usr/lib/postgresql/*/bin (Debian's layout).
//
// PostgreSQL refuses to run as root. Run as root, the server runs as the
// "postgres" user (or "nobody" if there is none), and its directory is
// handed to that user; run as any other user, it runs as that user.
//
// When the binaries are absent, or the server does not start, tests that
// ask for a server are skipped with a message saying why, unless the
// environment variable BLINDBANK_REQUIRE_POSTGRES is 1: then they fail, so
// that CI always covers PostgreSQL.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// RequireEnv is the environment variable that turns a missing PostgreSQL
// into a test failure instead of a skip.
const RequireEnv = "BLINDBANK_REQUIRE_POSTGRES"

// superuser is the database superuser the server is initialised with; the
// socket accepts it without a password (trust).
const superuser = "blindbank"

// Server is a throwaway PostgreSQL server.
type Server struct {
	Dir  string // base directory: data/, the socket, postgres.log
	Port int    // names the socket file; the server does not listen on TCP
	bin  string // directory of initdb, pg_ctl and postgres
	as   *runAs // the user to run the server as; nil: the current user

	mu      sync.Mutex
	dbs     int  // databases and schemas created, for unique names
	shareDB bool // the database "shared", which holds the schemas, exists

	// starting is set while Restart runs pg_ctl start: the postmaster may
	// not have written its postmaster.pid yet (stopAll waits for it).
	starting atomic.Bool

	// settings are the server parameters (name=value) Restart sets after
	// its own, overriding them (RestartWith).
	settings []string
}

// BinEnv is the environment variable that names the directory of the
// server binaries; when it is set, no other place is searched.
const BinEnv = "BLINDBANK_PG_BIN"

// FindBin returns the directory holding initdb, pg_ctl and postgres.
func FindBin() (string, error) {
	var dirs []string
	if d := os.Getenv(BinEnv); d != "" {
		if hasServer(d) {
			return d, nil
		}
		return "", fmt.Errorf("initdb, pg_ctl and postgres not found in $%s (%s)", BinEnv, d)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	debian, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest version first: sort by the numeric version directory.
	slices.SortFunc(debian, func(a, b string) int {
		va, vb := versionOf(a), versionOf(b)
		if va != vb {
			return vb - va
		}
		return strings.Compare(b, a)
	})
	dirs = append(dirs, debian...)
	dirs = append(dirs, "/usr/local/pgsql/bin")
	for _, d := range dirs {
		if hasServer(d) {
			return d, nil
		}
	}
	return "", errors.New("initdb, pg_ctl and postgres not found on PATH or under /usr/lib/postgresql/*/bin")
}

func hasServer(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

func versionOf(binDir string) int {
	v := 0
	for _, r := range filepath.Base(filepath.Dir(binDir)) {
		if r < '0' || r > '9' {
			break
		}
		v = v*10 + int(r-'0')
	}
	return v
}

// Start initialises and starts a new server in a new temporary directory.
// The caller must Stop it.
func Start() (*Server, error) {
	bin, err := FindBin()
	if err != nil {
		return nil, err
	}
	as, err := serverUser()
	if err != nil {
		return nil, err
	}
	// Not t.TempDir: the server may run as another user, who must own the
	// directory; and a unix socket path must stay under 108 bytes.
	base := os.TempDir()
	if len(base) > 60 {
		base = "/tmp"
	}
	reapOrphans(base, bin, as)
	dir, err := os.MkdirTemp(base, "bbpg-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{Dir: dir, Port: 20000 + rand.IntN(40000), bin: bin, as: as}
	if err := s.as.own(dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if out, err := s.run("initdb", "-D", s.dataDir(), "-U", superuser, "--auth=trust",
		"--no-sync", "--encoding=UTF8", "--locale=C"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	live.add(s)
	if err := s.Restart(); err != nil {
		live.remove(s)
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// live holds the servers started and not yet stopped. A test binary killed
// by SIGINT or SIGTERM (an interrupted go test, a CI job cancelled) runs no
// cleanups: the first server started installs a handler that stops them
// all before the binary exits, rather than leave them to the next run's
// reapOrphans. A binary killed by SIGKILL or by a test timeout still
// leaves its servers to that.
var live liveSet

type liveSet struct {
	mu      sync.Mutex
	servers map[*Server]bool
	once    sync.Once
}

func (l *liveSet) add(s *Server) {
	l.once.Do(func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			got := <-sig
			l.stopAll()
			fmt.Fprintf(os.Stderr, "pgtest: %v: stopped the test servers\n", got)
			os.Exit(1)
		}()
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.servers == nil {
		l.servers = make(map[*Server]bool)
	}
	l.servers[s] = true
}

func (l *liveSet) remove(s *Server) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.servers, s)
}

// stopAll stops every live server and removes its directory: it sends each
// postmaster SIGQUIT (pg_ctl's immediate mode) first, without waiting, since
// a server left running is the harm, and then removes the directories. It
// ignores SIGPIPE first: go test, killed too, no longer reads the binary's
// output, and a test's next write would otherwise end the binary here. It
// holds the lock to the end, so that no server starts after. A server
// still starting may not have written its postmaster.pid: it waits for
// that up to startingWait in all, or the server would start after the
// binary has gone, left to the next run's reapOrphans (a CI run has none).
func (l *liveSet) stopAll() {
	signal.Ignore(syscall.SIGPIPE)
	l.mu.Lock()
	defer l.mu.Unlock()
	deadline := time.Now().Add(startingWait)
	for s := range l.servers {
		pid := s.postmaster()
		for pid == 0 && s.starting.Load() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			pid = s.postmaster()
		}
		if pid > 0 {
			quit(pid)
		}
	}
	for s := range l.servers {
		os.RemoveAll(s.Dir)
	}
}

// startingWait bounds how long stopAll waits for the servers still
// starting to write their postmaster.pid (a postmaster writes it first
// thing; pg_ctl, killed by the same signal, may never have started one).
const startingWait = 5 * time.Second

// postmaster returns the process id in the server's postmaster.pid, or 0.
func (s *Server) postmaster() int {
	b, err := os.ReadFile(filepath.Join(s.dataDir(), "postmaster.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	return pid
}

// ownerFile, in a server's directory, holds the process id of the test
// binary that started it.
const ownerFile = "owner.pid"

// reapOrphans stops and removes the servers that test binaries which have
// since died (killed by a timeout, say) left behind in base.
func reapOrphans(base, bin string, as *runAs) {
	dirs, _ := filepath.Glob(filepath.Join(base, "bbpg-*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or still being created
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || processAlive(pid) {
			continue
		}
		o := &Server{Dir: dir, bin: bin, as: as}
		if _, err := os.Stat(filepath.Join(o.dataDir(), "postmaster.pid")); err == nil {
			o.run("pg_ctl", "stop", "-D", o.dataDir(), "-m", "immediate", "-w", "-s")
		}
		os.RemoveAll(dir)
	}
}

func (s *Server) dataDir() string { return filepath.Join(s.Dir, "data") }

// LogFile is the server's log.
func (s *Server) LogFile() string { return filepath.Join(s.Dir, "postgres.log") }

// Restart starts the server (again), after Start, Crash or a stopped one;
// after a crash, the server recovers from its WAL before it accepts
// connections. It waits until the server is ready.
func (s *Server) Restart() error {
	s.starting.Store(true)
	defer s.starting.Store(false)
	opts := strings.Join([]string{
		"-k", s.Dir,
		"-p", fmt.Sprint(s.Port),
		"-c", "listen_addresses=''",
		"-c", "max_connections=200",
		"-c", "synchronous_commit=on", // the default, stated: tests rely on it
		"-c", "fsync=on",
		"-c", "full_page_writes=on",
	}, " ")
	for _, kv := range s.settings {
		opts += " -c " + kv // the last of a name's wins
	}
	if out, err := s.run("pg_ctl", "start", "-D", s.dataDir(), "-w", "-t", "120", "-s", "-l", s.LogFile(), "-o", opts); err != nil {
		return fmt.Errorf("pgtest: pg_ctl start: %w\n%s\n%s", err, out, s.logTail())
	}
	return nil
}

// RestartWith stops s and starts it again with the server parameters
// given (name=value, no spaces), which override Restart's own (fsync=on,
// full_page_writes=on, synchronous_commit=on) until the next RestartWith:
// for a test of what a store does on a server set up otherwise. Set on
// the command line, they also override ALTER SYSTEM (SetConfig).
func (s *Server) RestartWith(settings ...string) error {
	if out, err := s.run("pg_ctl", "stop", "-D", s.dataDir(), "-m", "fast", "-w", "-s"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
	}
	s.settings = settings
	return s.Restart()
}

// Crash stops the server abruptly (pg_ctl stop -m immediate: every server
// process is sent SIGQUIT and exits at once, without a checkpoint), as a
// kill -9 or a power cut would, except that the operating system keeps
// what the server had written.
func (s *Server) Crash() error {
	if out, err := s.run("pg_ctl", "stop", "-D", s.dataDir(), "-m", "immediate", "-w", "-s"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop -m immediate: %w\n%s", err, out)
	}
	return nil
}

// Stop shuts the server down and removes its directory.
func (s *Server) Stop() error {
	if _, err := os.Stat(filepath.Join(s.dataDir(), "postmaster.pid")); err == nil {
		if out, err := s.run("pg_ctl", "stop", "-D", s.dataDir(), "-m", "fast", "-w", "-s"); err != nil {
			return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
		}
	}
	live.remove(s)
	return os.RemoveAll(s.Dir)
}

// DSN returns the connection string of database db.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", s.Dir, s.Port, superuser, db)
}

// CreateDatabase creates a new, empty database and returns its DSN.
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	s.mu.Lock()
	s.dbs++
	name := fmt.Sprintf("test_%d", s.dbs)
	s.mu.Unlock()
	if err := s.exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	return s.DSN(name), nil
}

// CreateSchema creates a new, empty schema in the database "shared" and
// returns a DSN whose search_path is that schema: a store opened with it
// sees only its own tables. A schema is much quicker to create than a
// database.
func (s *Server) CreateSchema(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.shareDB {
		if err := s.exec(ctx, "postgres", `CREATE DATABASE shared`); err != nil {
			return "", fmt.Errorf("pgtest: create database: %w", err)
		}
		s.shareDB = true
	}
	s.dbs++
	name := fmt.Sprintf("test_%d", s.dbs)
	if err := s.exec(ctx, "shared", "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create schema: %w", err)
	}
	return s.DSN("shared") + " search_path=" + name, nil
}

func (s *Server) exec(ctx context.Context, db, sql string) error {
	conn, err := pgx.Connect(ctx, s.DSN(db))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// run runs one of the server's programs as the server's user.
func (s *Server) run(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = s.Dir // the server's user may not be able to enter ours
	env := []string{"LC_ALL=C", "LANG=C", "TZ=UTC"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "LC_") && !strings.HasPrefix(kv, "LANG=") && !strings.HasPrefix(kv, "TZ=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	s.as.apply(cmd)
	return cmd.CombinedOutput()
}

func (s *Server) logTail() string {
	b, err := os.ReadFile(s.LogFile())
	if err != nil {
		return ""
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return "server log (tail):\n" + string(b)
}

// Unavailable skips tb with err as the reason, or fails it if
// BLINDBANK_REQUIRE_POSTGRES=1.
func Unavailable(tb testing.TB, err error) {
	tb.Helper()
	if os.Getenv(RequireEnv) == "1" {
		tb.Fatalf("PostgreSQL is required (%s=1) but unavailable: %v", RequireEnv, err)
	}
	tb.Skipf("skipping: PostgreSQL unavailable: %v (install the postgresql package, or set %s=1 to fail instead)", err, RequireEnv)
}

// New starts a server of tb's own, stopped when tb ends; it skips or
// fails tb (see Unavailable) if that is impossible.
func New(tb testing.TB) *Server {
	tb.Helper()
	s, err := Start()
	if err != nil {
		Unavailable(tb, err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("%v", err)
		}
	})
	return s
}

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Shared returns the test binary's shared server, starting it on first
// use; it skips or fails tb (see Unavailable) if that is impossible. A
// package that uses it stops it from TestMain with Main.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	shared.once.Do(func() { shared.srv, shared.err = Start() })
	if shared.err != nil {
		Unavailable(tb, shared.err)
	}
	return shared.srv
}

// Main runs the tests and then stops the shared server, if one was
// started. Call it from TestMain: func TestMain(m *testing.M) { pgtest.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// NewSchema creates a fresh schema on s for tb and returns a DSN that
// uses it (see CreateSchema).
func (s *Server) NewSchema(tb testing.TB) string {
	tb.Helper()
	dsn, err := s.CreateSchema(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	return dsn
}

// NewDatabase creates a fresh database on s for tb and returns its DSN.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	dsn, err := s.CreateDatabase(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	return dsn
}
