package pgtest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/plab/plab/internal/testenv"
)

// psql runs sql against dsn with the psql (libpq) of the server and returns
// its unaligned output.
func psql(t *testing.T, s *Server, dsn, sql string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(s.bin, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", dsn, "-c", sql).CombinedOutput()
	if err != nil {
		t.Fatalf("psql %q -c %q: %v\n%s", dsn, sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestNewestBin(t *testing.T) {
	tests := []struct {
		paths []string
		want  string
	}{
		{nil, ""},
		{[]string{"/usr/lib/postgresql/15/bin/postgres"}, "/usr/lib/postgresql/15/bin"},
		{[]string{
			"/usr/lib/postgresql/9.6/bin/postgres",
			"/usr/lib/postgresql/17/bin/postgres",
			"/usr/lib/postgresql/15/bin/postgres",
		}, "/usr/lib/postgresql/17/bin"},
	}
	for _, tt := range tests {
		if got := newestBin(tt.paths); got != tt.want {
			t.Errorf("newestBin(%q) = %q, want %q", tt.paths, got, tt.want)
		}
	}
}

func TestDatabases(t *testing.T) {
	s := Start(t, Options{})
	dsn1, dsn2 := s.NewDatabase(t), s.NewDatabase(t)
	if !strings.HasPrefix(dsn1, "postgres://plab@/db") {
		t.Errorf("DSN = %q, want postgres://plab@/db...", dsn1)
	}
	if got := psql(t, s, dsn1, "select 1"); got != "1" {
		t.Errorf("select 1 = %q, want 1", got)
	}
	db1, db2 := psql(t, s, dsn1, "select current_database()"), psql(t, s, dsn2, "select current_database()")
	if db1 == db2 {
		t.Errorf("both DSNs reach database %q", db1)
	}
	psql(t, s, dsn1, "create table only_here (x int)")
	if got := psql(t, s, dsn2, "select count(*) from pg_tables where tablename = 'only_here'"); got != "0" {
		t.Errorf("table of database 1 seen %s times in database 2", got)
	}
	if got := psql(t, s, dsn1, "show fsync"); got != "on" {
		t.Errorf("fsync = %s, want on by default", got)
	}
}

func TestKill9KeepsCommittedRow(t *testing.T) {
	s := Start(t, Options{})
	dsn := s.NewDatabase(t)
	psql(t, s, dsn, "create table t (v text); insert into t values ('committed')")
	old := s.pids()
	if err := s.Kill9(); err != nil {
		t.Fatal(err)
	}
	if pids := s.pids(); len(pids) != 0 {
		t.Fatalf("after Kill9, processes %v remain (of %v)", pids, old)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if got := psql(t, s, dsn, "select v from t"); got != "committed" {
		t.Errorf("after kill -9 and restart, row = %q, want committed", got)
	}
	if log := s.logTail(); !strings.Contains(log, "not properly shut down") {
		t.Errorf("no crash recovery in the log:\n%s", log)
	}
	// A restart of a running server is a clean one.
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if got := psql(t, s, dsn, "select count(*) from t"); got != "1" {
		t.Errorf("after restart, %s rows, want 1", got)
	}
}

func TestStopLeavesNothing(t *testing.T) {
	for _, kill := range []bool{false, true} {
		t.Run("kill9="+strconv.FormatBool(kill), func(t *testing.T) {
			s, err := StartMain("", Options{NoFsync: true})
			if errors.Is(err, ErrNotInstalled) {
				testenv.Unmet(t, "%v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := psql(t, s, s.DSN("postgres"), "show fsync"); got != "off" {
				t.Errorf("fsync = %s with NoFsync, want off", got)
			}
			pids := s.pids()
			if len(pids) < 2 {
				t.Errorf("server processes = %v, want the postmaster and its children", pids)
			}
			b, err := os.ReadFile(s.pidFile())
			if err != nil {
				t.Fatal(err)
			}
			shmid := strings.Fields(strings.Split(string(b), "\n")[6])[1]
			if kill {
				if err := s.Kill9(); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Stop(); err != nil {
				t.Fatal(err)
			}
			for _, pid := range pids {
				if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && !strings.Contains(string(st), ") Z ") {
					t.Errorf("process %d outlives Stop: %s", pid, st)
				}
			}
			shm, err := os.ReadFile("/proc/sysvipc/shm")
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(string(shm), "\n")[1:] {
				if f := strings.Fields(l); len(f) > 1 && f[1] == shmid {
					t.Errorf("shared memory segment %s outlives Stop: %s", shmid, l)
				}
			}
			if _, err := os.Stat(s.dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Stat(%s) after Stop: %v, want not exist", s.dir, err)
			}
			if err := s.Stop(); err != nil {
				t.Errorf("second Stop: %v", err)
			}
		})
	}
}
