//go:build unix

package pgtest

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv makes the test binary, run again by TestSignalStopsServers,
// start a server and a standby of it, print their directories and wait to
// be killed.
const childEnv = "BLINDBANK_PGTEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		s, err := Start()
		if err != nil {
			os.Stdout.WriteString("error " + err.Error() + "\n")
			os.Exit(2)
		}
		sb, err := s.StartStandby("child")
		if err != nil {
			os.Stdout.WriteString("error " + err.Error() + "\n")
			os.Exit(2)
		}
		os.Stdout.WriteString(s.Dir + " " + sb.Dir + "\n")
		time.Sleep(time.Hour)
		os.Exit(3)
	}
	os.Exit(m.Run())
}

// A test binary interrupted or terminated (go test cancelled, a CI job
// stopped) stops its servers and removes their directories on its way out,
// though it runs no test cleanups.
func TestSignalStopsServers(t *testing.T) {
	if _, err := FindBin(); err != nil {
		Unavailable(t, err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"=1")
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil {
				t.Fatalf("reading the child's server directory: %v", err)
			}
			if strings.HasPrefix(line, "error ") {
				Unavailable(t, errors.New(strings.TrimSpace(strings.TrimPrefix(line, "error "))))
			}
			dirs := strings.Fields(line)
			var pids []int
			for _, dir := range dirs {
				pid := (&Server{Dir: dir}).postmaster()
				if pid == 0 {
					t.Fatalf("the child's server in %s is not running", dir)
				}
				pids = append(pids, pid)
			}

			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err = cmd.Wait()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("child after %v: %v, want exit status 1", sig, err)
			}
			for i, dir := range dirs {
				if _, err := os.Stat(dir); !os.IsNotExist(err) {
					t.Errorf("server directory %s still there after %v (stat: %v)", dir, sig, err)
					os.RemoveAll(dir)
				}
				// The postmaster was sent SIGQUIT, not waited for.
				deadline := time.Now().Add(10 * time.Second)
				for running(pids[i]) && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if running(pids[i]) {
					syscall.Kill(pids[i], syscall.SIGKILL)
					t.Errorf("postmaster %d (%s) still running after %v", pids[i], dir, sig)
				}
			}
		})
	}
}

// running reports whether process pid exists and has not exited: an exited
// postmaster stays a zombie until init, which may be slow to, reaps it.
func running(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return processAlive(pid)
	}
	// The state follows the command name, which is in parentheses.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(fields) == 0 || fields[0] != "Z"
}

// A signal that came while a server was starting, before its postmaster
// wrote postmaster.pid, left that server running after the binary exited:
// stopAll found no process to stop. It now waits for the file of a server
// still starting. The "postmaster" is a sleep whose pid is written a
// moment after stopAll begins.
func TestStopAllWaitsForStartingServer(t *testing.T) {
	s := &Server{Dir: t.TempDir()}
	if err := os.MkdirAll(s.dataDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer cmd.Process.Kill()
	s.starting.Store(true)
	go func() {
		time.Sleep(200 * time.Millisecond)
		os.WriteFile(filepath.Join(s.dataDir(), "postmaster.pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600)
	}()
	l := &liveSet{servers: map[*Server]bool{s: true}}
	l.stopAll()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGQUIT {
			t.Errorf("the starting server ended with %v, want SIGQUIT", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the server that was starting still runs after stopAll")
	}
}
